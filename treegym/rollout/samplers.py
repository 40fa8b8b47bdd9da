"""Where to branch: the GRPO chain baseline and Tree-GRPO's tree shape.

A sampler only decides shapes and expansion points; the engine does the work. Keeping
the choice apart makes the accounting comparable: both samplers run on the same engine,
so any saving a tree shows comes from not redoing shared turns, nothing else.

Both speak one protocol, so the engine never asks which it has: `trees_per_task`,
`leaves_per_tree`, `rounds` (expansion rounds after the first chain), `expansion_points`
and `keep`. A chain is a tree with no rounds that keeps its one leaf. The training
config holds these models themselves, told apart by `mode`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..records import Node


def canonical_key(node: Node) -> tuple[int, int, int]:
    """A node's place in its tree that doesn't depend on timing: (round, expansion, depth).

    Branches of one tree finish in whatever order their tool calls happen to finish, so
    node ids are handed out in that order; sorting by this key makes expansion choices and
    the final numbering the same run after run.
    """
    if node.origin is None:
        return (0, 0, node.depth)
    return (node.origin.round, node.origin.index, node.depth)


class ChainSampler(BaseModel):
    """GRPO's baseline: `n` independent episodes per task, each its own one-leaf tree."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["chain"] = Field("chain", description="chain: GRPO's independent episodes.")
    n: int = Field(4, ge=1, description="Chains per task; their rewards form the task's "
                   "advantage group, so n >= 2 is what lets the reward vary within a group.")

    @property
    def trees_per_task(self) -> int:
        return self.n

    @property
    def leaves_per_tree(self) -> int:
        return 1

    @property
    def leaves_per_task(self) -> int:
        return self.n

    @property
    def rounds(self) -> int:
        return 0

    def expansion_points(self, nodes: list[Node], rng: np.random.Generator) -> list[int | None]:
        """None: a chain never branches (the engine asks only while rounds remain)."""
        return []

    def keep(self, leaves: list[int], rng: np.random.Generator) -> list[int]:
        return list(leaves)


class TreeSampler(BaseModel):
    """Tree-GRPO: `m` chains per task, then `l` rounds of `n` expansions per tree, keep `k`.

    Expansion points are drawn among the root and the non-leaf nodes: uniformly with
    replacement (`branch="random"`, the paper's rule), or the turns whose first generated
    tokens were most uncertain (`branch="entropy"`, ARPO's signal).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["tree"] = Field("tree", description="tree: Tree-GRPO's branching episodes.")
    m: int = Field(2, ge=1, description="Trees per task, each started as one chain; all "
                   "their kept leaves form the task's advantage group.")
    n: int = Field(2, ge=1, description="Expansions per tree per round: each continues the "
                   "episode from a random (or uncertain) earlier turn of that tree.")
    l: int = Field(  # noqa: E741 - the paper's name
        1, ge=0, description="Expansion rounds; a tree has 1 + n·l leaves, and 0 makes it "
        "a plain chain.")
    k: int | None = Field(3, ge=1, description="Leaves kept (and trained on) per tree; "
                          "None keeps all.")
    branch: Literal["random", "entropy"] = Field(
        "random", description="Where expansions start: turns drawn uniformly (the paper's "
        "rule), or the turns whose first tokens had the highest entropy.")
    entropy_tokens: int = Field(20, ge=1, description="Leading tokens whose entropy counts "
                                "(branch: entropy).")

    @property
    def trees_per_task(self) -> int:
        return self.m

    @property
    def leaves_per_tree(self) -> int:
        return 1 + self.n * self.l

    @property
    def leaves_per_task(self) -> int:
        return self.m * min(self.k or self.leaves_per_tree, self.leaves_per_tree)

    @property
    def rounds(self) -> int:
        return self.l

    def expansion_points(self, nodes: list[Node], rng: np.random.Generator) -> list[int | None]:
        """`n` node ids to continue from (None for the prompt), among non-leaf nodes."""
        ordered = sorted(nodes, key=canonical_key)
        candidates: list[int | None] = [None] + [node.id for node in ordered if not node.is_leaf]
        if self.branch == "random":
            return [candidates[int(i)] for i in rng.integers(len(candidates), size=self.n)]
        scores = {c: self._uncertainty(c, nodes) for c in candidates}
        # ties broken at random so equal scores don't always favour the root
        order = sorted(candidates, key=lambda c: (-scores[c], rng.random()))
        return [order[i % len(order)] for i in range(self.n)]

    def _uncertainty(self, point: int | None, nodes: list[Node]) -> float:
        """Mean entropy of the first tokens generated *from* this point (its first child)."""
        child = next((node for node in nodes if node.parent == point), None)
        head = child.entropies[: self.entropy_tokens] if child else []
        return float(np.mean(head)) if head else 0.0

    def keep(self, leaves: list[int], rng: np.random.Generator) -> list[int]:
        """The `k` leaves kept for training, drawn without replacement."""
        if self.k is None or self.k >= len(leaves):
            return list(leaves)
        return sorted(int(i) for i in rng.choice(leaves, size=self.k, replace=False))


Sampler = ChainSampler | TreeSampler
