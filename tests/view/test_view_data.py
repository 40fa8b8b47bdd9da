"""What the viewer shows is computed from the records: savings, returns, advantages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_cli import treegym

from treegym import Tree
from treegym.rollout import RolloutStats
from treegym.view import load_trees, page_for, savings, task_key, tips, view_model


def test_view_model_has_every_node_savings_and_advantages(trees_file: Path) -> None:
    trees = load_trees(trees_file)
    model = view_model({"x": trees})
    assert [len(t["nodes"]) for t in model["trees"]] == [len(t.nodes) for t in trees]
    for tree, shown in zip(trees, model["trees"], strict=True):
        stats = RolloutStats()
        stats.add_tree(tree)
        s = shown["savings"]
        assert s["generated"] == sum(len(n.action_ids) for n in tree.nodes)
        assert s["chain_generated"] == stats.chain_generated_tokens > s["generated"]
        assert s["tool_calls"] < s["chain_tool_calls"] == stats.chain_tool_calls
        for node in shown["nodes"]:
            assert (node["return"] is None) == (not node["leaf"])
    leaves = {n["id"]: n for n in model["trees"][0]["nodes"] if n["leaf"]}
    assert {i for i, n in leaves.items() if n["advantage"] is not None} == set(trees[0].kept)
    assert all(n["advantage"] is None for n in model["trees"][1]["nodes"])


def test_view_shows_the_advantages_a_trainer_wrote(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="training needs the torch extra")
    from treegym.train import TrainConfig, train

    config = TrainConfig(env="treegym/Maze-v0", env_kwargs={"size": 2, "max_turns": 2},
                         policy="tiny", tasks_per_step=1, rollout={"mode": "chain", "n": 2},
                         max_new_tokens=8, steps=1, out=tmp_path / "run")
    train(config)
    path = config.out / "trees.jsonl"
    trees = load_trees(path)  # what `treegym view OUT/trees.jsonl` loads (page_for)
    assert trees
    for tree, shown in zip(trees, view_model({str(path): trees})["trees"], strict=True):
        leaves = {n["id"]: n["advantage"] for n in shown["nodes"] if n["leaf"]}
        assert tree.kept and set(tree.kept) <= set(leaves)
        assert all(leaves[leaf] == tree.advantages[leaf] for leaf in tree.kept)


def _as(tree: Tree, **fields: object) -> Tree:
    """`tree` as another run would have written it: the same task at another index, say."""
    return tree.model_copy(update=fields)


def test_trees_group_by_file_and_task_id_not_by_index(trees_file: Path, tmp_path: Path) -> None:
    first, second = load_trees(trees_file)  # two tasks, at indexes 0 and 1
    assert first.task.id != second.task.id
    files = {
        "a.jsonl": [first, second, _as(first, task_index=5, seed=5, tree_index=1)],
        "b.jsonl": [_as(second, task_index=0), _as(first, task_index=1)],  # seeds shifted
    }
    groups = [(t["file"], t["task"], t["trees"], t["seeds"])
              for t in view_model(files)["tasks"]]
    assert groups == [
        ("a.jsonl", first.task.id, [0, 2], [first.seed, 5]),  # one task, two runs' indexes
        ("a.jsonl", second.task.id, [1], [second.seed]),
        ("b.jsonl", second.task.id, [3], [second.seed]),  # another file: its own group
        ("b.jsonl", first.task.id, [4], [first.seed]),
    ]
    nameless = [_as(first, task=first.task.model_copy(update={"id": ""})),
                _as(second, task=second.task.model_copy(update={"id": ""}))]
    assert [task_key(tree) for tree in nameless] == ["#0", "#1"]
    assert [t["task"] for t in view_model({"c.jsonl": nameless})["tasks"]] == ["#0", "#1"]

    for name, trees in files.items():
        (tmp_path / name).write_text("".join(t.model_dump_json() + "\n" for t in trees))
    html = page_for([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
    data = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    assert data["files"] == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert len(data["tasks"]) == 4 and len(data["trees"]) == 5


def test_static_page_is_self_contained(trees_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    done = treegym("view", str(trees_file), "--static", str(out))
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    assert html == page_for(trees_file)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:|@import""",
                         html), "the page must not load anything from the network"
    data = html.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["trees"]


def test_record_text_cannot_break_out_of_the_page(trees_file: Path, tmp_path: Path) -> None:
    row = json.loads(trees_file.read_text().splitlines()[0])
    row["task"]["prompt"] = "</script><script>alert(1)</script>"
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_text(json.dumps(row) + "\n")
    html = page_for(hostile)
    assert html.count("</script>") == 2  # the data block's and the code block's, no more


def test_bad_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"env_id": 3}\n')
    done = treegym("view", str(bad), "--static", str(tmp_path / "x.html"))
    assert done.returncode == 1 and done.stderr.startswith("treegym: error: ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "bad.jsonl:1" in done.stderr


def test_play_session_savings_count_open_branches(tmp_path: Path) -> None:
    from helpers import call

    from treegym.play import PlaySession

    with PlaySession("treegym/Counter-v0", seed=3) as s:
        s.step(call("add", amount=1))
        s.fork()
        s.step(call("add", amount=2))  # an open branch end, not a leaf
        s.go(0)
        s.step("<answer>1</answer>")
        tree = s.to_tree()
    assert tree.leaves == [2] and tips(tree) == [1, 2]
    assert savings(tree)["tool_calls"] == 2 and savings(tree)["chain_tool_calls"] == 3
