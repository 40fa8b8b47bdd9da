"""`TreeSink`: where finished trees go, for `collect` and the Ray driver alike.

One place owns what a rollout's output file promises: on resume, the whole trees
already written (a torn last line from a crash is cut off) are skipped; every (task,
tree) is written exactly once, however often it arrives (a retried Ray chunk); and each
is fsynced before it counts, so Ctrl-C or a crash leaves a valid file of whole trees.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from ..errors import RecordError
from ..records import Tree, read_jsonl, write_jsonl
from .stats import RolloutStats

TreeKey = tuple[int, int]  # (task_index, tree_index)
_WORKER_COSTS = ("generated_tokens", "prefilled_tokens", "cached_tokens", "gen_seconds")


class RolloutResult(BaseModel):
    trees: list[Tree]
    stats: RolloutStats


def finished_trees(path: Path) -> list[Tree]:
    """The whole trees already in `path`; a torn last line (a crash mid-write) is cut off."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        path.write_text("".join(lines[:-1]), encoding="utf-8")
    try:
        return list(read_jsonl(path, Tree))
    except RecordError as exc:
        raise RecordError(f"{exc}; cannot resume from it, write to a new --out file") from None


class TreeSink:
    """The trees of one rollout: each (task, tree) once, fsynced to `out` when given."""

    def __init__(self, out: str | Path | None = None, *, resume: bool = False,
                 on_tree: Callable[[Tree], None] | None = None) -> None:
        self.out = Path(out) if out is not None else None
        self.resume, self.on_tree = resume, on_tree
        before = finished_trees(self.out) if self.out is not None and resume else []
        self.written: set[TreeKey] = {(t.task_index, t.tree_index) for t in before}
        self.trees: list[Tree] = []
        self.stats = RolloutStats()

    def begin(self) -> None:
        """Start a fresh output file unless resuming; call once the run is sure to start,
        so a run refused early (a cluster that would not let us in) loses no file."""
        if self.out is not None and not self.resume:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text("")

    def add(self, tree: Tree) -> bool:
        """Keep `tree` unless its (task, tree) is in already; True if it was new."""
        key = (tree.task_index, tree.tree_index)
        if key in self.written:
            return False
        self.written.add(key)
        if self.out is not None:
            write_jsonl(self.out, [tree])
        self.trees.append(tree)
        self.stats.add_tree(tree)
        if self.on_tree is not None:
            self.on_tree(tree)
        return True

    def take(self, result: RolloutResult) -> None:
        """A worker's result: its new trees, and its generation costs summed in."""
        for tree in result.trees:
            self.add(tree)
        for key in _WORKER_COSTS:
            setattr(self.stats, key, getattr(self.stats, key) + getattr(result.stats, key))

    def result(self) -> RolloutResult:
        return RolloutResult(trees=sorted(self.trees, key=lambda t: (t.task_index, t.tree_index)),
                             stats=self.stats)
