"""`TreeSink`: what a rollout's output file promises, for `collect` and the Ray driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from treegym import Tree, read_jsonl
from treegym.errors import RecordError
from treegym.records import Node, Task
from treegym.rollout import RolloutResult, RolloutStats, TreeSink


def tree(task: int, index: int = 0) -> Tree:
    node = Node(id=0, parent=None, depth=1, action_ids=[5, 6],
                action_logprobs=[-0.1, -0.2], reward=1.0, terminated=True)
    return Tree(env_id="test", task=Task(id=f"t{task}", prompt="p"), task_index=task,
                tree_index=index, seed=task, mode="chain", policy="test", prompt_ids=[1],
                nodes=[node], kept=[0])


def test_each_tree_is_written_once_however_often_it_arrives(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    seen: list[Tree] = []
    sink = TreeSink(out, on_tree=seen.append)
    sink.begin()
    assert sink.add(tree(1)) and sink.add(tree(0)) and not sink.add(tree(1))
    sink.take(RolloutResult(trees=[tree(0), tree(2)],
                            stats=RolloutStats(generated_tokens=7, gen_seconds=0.5)))
    assert [(t.task_index, t.tree_index) for t in read_jsonl(out, Tree)] == [(1, 0), (0, 0),
                                                                            (2, 0)]
    assert [t.task_index for t in seen] == [1, 0, 2]
    result = sink.result()
    assert [t.task_index for t in result.trees] == [0, 1, 2]  # sorted for the caller
    assert result.stats.generated_tokens == 7 and result.stats.trees == 3


def test_resume_skips_whole_trees_and_cuts_a_torn_line(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    out.write_text(tree(0).model_dump_json() + "\n" + tree(1).model_dump_json()[:40])
    sink = TreeSink(out, resume=True)
    sink.begin()  # resuming: the file is kept
    assert sink.written == {(0, 0)}
    assert not sink.add(tree(0)) and sink.add(tree(1))
    assert [t.task_index for t in read_jsonl(out, Tree)] == [0, 1]


def test_a_fresh_run_starts_an_empty_file_only_when_it_begins(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "trees.jsonl"
    sink = TreeSink(out)
    assert not out.exists()  # a run refused before it began loses nothing
    sink.begin()
    assert out.read_text() == ""


def test_resuming_from_a_file_that_is_not_trees_names_the_way_out(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    out.write_text('{"not": "a tree"}\n')
    with pytest.raises(RecordError, match="write to a new --out file"):
        TreeSink(out, resume=True)
