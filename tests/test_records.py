"""Records round-trip through JSONL unchanged; bad files fail with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CounterEnv, call

from treegym import Episode, RecordError, Task, Tree, read_jsonl, write_jsonl
from treegym.records import Origin


def test_episode_round_trips(counter: CounterEnv, tmp_path: Path) -> None:
    counter.step(call("add", amount=2) + call("fly"))
    counter.step("<answer>2</answer>")
    episode = counter.episode()
    path = tmp_path / "runs" / "eps.jsonl"
    assert write_jsonl(path, [episode, episode]) == 2
    back = list(read_jsonl(path, Episode))
    assert back == [episode, episode]
    assert back[0].turns[1].terminated and back[0].done
    assert [r.seconds for r in back[0].turns[0].results] == [
        r.seconds for r in episode.turns[0].results
    ]


def test_append_keeps_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    write_jsonl(path, [Task(id="a", prompt="p")])
    write_jsonl(path, [Task(id="b", prompt="q")])
    assert [t.id for t in read_jsonl(path, Task)] == ["a", "b"]
    write_jsonl(path, [Task(id="c", prompt="r")], append=False)
    assert [t.id for t in read_jsonl(path, Task)] == ["c"]


def test_a_torn_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    write_jsonl(path, [Task(id="a", prompt="p")])
    with path.open("a") as fh:
        fh.write('{"id": "b", "prom')
    reader = read_jsonl(path, Task)
    assert next(reader).id == "a"
    with pytest.raises(RecordError, match=r"tasks.jsonl:2: not a valid Task"):
        next(reader)


def test_unknown_fields_and_missing_files_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "prompt": "p", "promt": "typo"}\n')
    with pytest.raises(RecordError, match=r"t.jsonl:1: not a valid Task \(promt: Extra inputs"):
        list(read_jsonl(path, Task))
    with pytest.raises(RecordError, match="cannot read records from"):
        list(read_jsonl(tmp_path / "missing.jsonl", Task))


OLD_FORMAT = Path(__file__).parent / "data" / "trees-branch-field.jsonl"
"""Trees written by treegym before `Node.origin` / `Node.made_by` (commit 06d6ec7): an
engine tree (chain and r{round}x{i}), a play session (human, model, auto) and a
demonstration (scripted), each node with the one `branch` string of that format."""


def test_files_of_the_branch_format_still_load_with_typed_origins() -> None:
    raw = [json.loads(line) for line in OLD_FORMAT.read_text().splitlines()]
    trees = list(read_jsonl(OLD_FORMAT, Tree))
    assert [t.policy for t in trees] == [r["policy"] for r in raw]
    seen = set()
    for old, tree in zip(raw, trees, strict=True):
        for old_node, node in zip(old["nodes"], tree.nodes, strict=True):
            branch = old_node["branch"]
            seen.add(branch)
            want_origin = (None if not branch.startswith("r") else
                           Origin(round=int(branch[1:].split("x")[0]),
                                  index=int(branch.split("x")[1])))
            assert node.origin == want_origin
            assert node.made_by == {"human": "human", "scripted": "scripted"}.get(
                branch, "policy")
            assert node.action_ids == old_node["action_ids"]
        for leaf in tree.kept:  # typed and scripted turns stay out of the action mask
            traj = tree.trajectory(leaf)
            sampled = [n.made_by == "policy" for n in tree.path(leaf)
                       for _ in n.action_ids]
            assert sum(traj.action_mask) == sum(sampled)
        again = Tree.model_validate_json(tree.model_dump_json())
        assert again == tree and '"branch"' not in tree.model_dump_json()
    assert {"chain", "r1x0", "r2x1", "human", "model", "auto", "scripted"} <= seen


def test_an_unknown_old_branch_is_a_record_error_naming_the_line(tmp_path: Path) -> None:
    line = json.loads(OLD_FORMAT.read_text().splitlines()[0])
    line["nodes"][0]["branch"] = "sideways"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(line) + "\n")
    with pytest.raises(RecordError, match=r"bad\.jsonl:1: not a valid Tree.*sideways"):
        list(read_jsonl(bad, Tree))
