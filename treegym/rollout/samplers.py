"""Where to branch: the GRPO chain baseline and Tree-GRPO's tree shape.

A sampler only decides shapes and expansion points; the engine does the work. Keeping
the choice apart makes the accounting comparable: both samplers run on the same engine,
so any saving a tree shows comes from not redoing shared turns, nothing else.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..records import Node

ROOT = -1
"""The expansion point that restarts from the prompt."""


def canonical_key(node: Node) -> tuple[int, int, int]:
    """A node's place in its tree that doesn't depend on timing: (round, expansion, depth).

    Branches of one tree finish in whatever order their tool calls happen to finish, so
    node ids are handed out in that order; sorting by this key makes expansion choices and
    the final numbering the same run after run.
    """
    if node.branch == "chain":
        return (0, 0, node.depth)
    round_, index = node.branch[1:].split("x")
    return (int(round_), int(index), node.depth)


class ChainSampler(BaseModel):
    """GRPO's baseline: `n` independent episodes per task, each its own one-leaf tree."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["chain"] = "chain"
    n: int = Field(4, ge=1, description="Episodes per task.")

    @property
    def trees_per_task(self) -> int:
        return self.n

    @property
    def leaves_per_tree(self) -> int:
        return 1

    @property
    def leaves_per_task(self) -> int:
        return self.n


class TreeSampler(BaseModel):
    """Tree-GRPO: `m` chains per task, then `l` rounds of `n` expansions per tree, keep `k`.

    Expansion points are drawn among the root and the non-leaf nodes: uniformly with
    replacement (`branch="random"`, the paper's rule), or the turns whose first generated
    tokens were most uncertain (`branch="entropy"`, ARPO's signal).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["tree"] = "tree"
    m: int = Field(2, ge=1, description="Trees per task.")
    n: int = Field(2, ge=1, description="Expansions per tree per round.")
    l: int = Field(1, ge=0, description="Expansion rounds.")  # noqa: E741 - the paper's name
    k: int | None = Field(3, ge=1, description="Leaves kept per tree; None keeps all.")
    branch: Literal["random", "entropy"] = "random"
    entropy_tokens: int = Field(20, ge=1, description="Leading tokens whose entropy counts.")

    @property
    def trees_per_task(self) -> int:
        return self.m

    @property
    def leaves_per_tree(self) -> int:
        return 1 + self.n * self.l

    @property
    def leaves_per_task(self) -> int:
        return self.m * min(self.k or self.leaves_per_tree, self.leaves_per_tree)

    def expansion_points(self, nodes: list[Node], rng: np.random.Generator) -> list[int]:
        """`n` node ids to continue from (ROOT for the prompt), among non-leaf nodes."""
        ordered = sorted(nodes, key=canonical_key)
        candidates = [ROOT] + [node.id for node in ordered if not node.is_leaf]
        if self.branch == "random":
            return [candidates[int(i)] for i in rng.integers(len(candidates), size=self.n)]
        scores = {c: self._uncertainty(c, nodes) for c in candidates}
        # ties broken at random so equal scores don't always favour the root
        order = sorted(candidates, key=lambda c: (-scores[c], rng.random()))
        return [order[i % len(order)] for i in range(self.n)]

    def _uncertainty(self, point: int, nodes: list[Node]) -> float:
        """Mean entropy of the first tokens generated *from* this point (its first child)."""
        parent = None if point == ROOT else point
        child = next((node for node in nodes if node.parent == parent), None)
        head = child.entropies[: self.entropy_tokens] if child else []
        return float(np.mean(head)) if head else 0.0

    def keep(self, leaves: list[int], rng: np.random.Generator) -> list[int]:
        """The `k` leaves kept for training, drawn without replacement."""
        if self.k is None or self.k >= len(leaves):
            return list(leaves)
        return sorted(int(i) for i in rng.choice(leaves, size=self.k, replace=False))


Sampler = ChainSampler | TreeSampler
