"""Records round-trip through JSONL unchanged; bad files fail with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CounterEnv, call

from treegym import Episode, RecordError, Task, read_jsonl, write_jsonl


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
