"""Synthetic tree batches shaped like Tree-GRPO's, for the learner's bench and tests.

Real rollouts need an env and a policy; checking that packing is exact and fast needs
only trees of the right shape. Each tree starts as one chain of `turns` nodes; every
further leaf branches from a random node of the tree (the prompt included, never a
leaf) and runs to the same depth, as Tree-GRPO's expansion does. Token ids, behaviour
log-probs and 0/1 rewards are random but fixed by `seed`.

`TreeShape` names a batch in the paper's terms (m trees per task, l rounds of n
expansions, k kept leaves) plus token lengths; `SHAPES` holds the ones the learner's
bench runs by name.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from ..records import Node, Origin, Task, Tree


class TreeShape(BaseModel):
    """A Tree-GRPO batch shape: every generated leaf is kept, so `leaves` = min(k, 1 + n·l)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    m: int = Field(ge=1, description="Trees per task.")
    n: int = Field(ge=1, description="Expansions per tree per round.")
    l: int = Field(ge=0, description="Expansion rounds.")  # noqa: E741 - the paper's name
    k: int | None = Field(ge=1, description="Leaves kept per tree; None keeps all.")
    turns: int = Field(ge=1, description="Turns from the prompt to every leaf.")
    prompt_tokens: int = Field(ge=1)
    action_tokens: int = Field(ge=1, description="Generated tokens per turn.")
    obs_tokens: int = Field(ge=0, description="Observation tokens after each non-final turn.")

    @property
    def leaves(self) -> int:
        return min(self.k or 1 + self.n * self.l, 1 + self.n * self.l)

    def trees(self, tasks: int, *, vocab: int = 512, seed: int = 0) -> list[Tree]:
        """`tasks` tasks of this shape (see `synthetic_trees`)."""
        return synthetic_trees(
            tasks, self.m, self.leaves, prompt_tokens=self.prompt_tokens, turns=self.turns,
            action_tokens=self.action_tokens, obs_tokens=self.obs_tokens, vocab=vocab,
            seed=seed,
        )


SHAPES = {
    # Tree-GRPO's default (m=2 n=2 l=1 k=3): 2 trees of 3 leaves a task, short turns
    "paper": TreeShape(m=2, n=2, l=1, k=3, turns=3, prompt_tokens=80, action_tokens=16,
                       obs_tokens=8),
    # one deep bushy tree a task (m=1 n=4 l=3, all 13 leaves kept), longer turns: more of
    # each leaf's path is shared, so packing has more to save
    "deep": TreeShape(m=1, n=4, l=3, k=None, turns=4, prompt_tokens=80, action_tokens=48,
                      obs_tokens=16),
}


def synthetic_trees(
    tasks: int = 8,
    trees: int = 2,
    leaves: int = 3,
    *,
    prompt_tokens: int = 192,
    turns: int = 4,
    action_tokens: int = 24,
    obs_tokens: int = 16,
    vocab: int = 512,
    seed: int = 0,
) -> list[Tree]:
    """`tasks` × `trees` trees of `leaves` kept leaves each; a task's trees share a prompt."""
    rng = random.Random(seed)

    def tokens(n: int) -> list[int]:
        return [rng.randrange(vocab) for _ in range(n)]

    def grow(nodes: list[Node], parent: Node | None) -> Node:
        depth = parent.depth + 1 if parent else 1
        last = depth == turns
        node = Node(
            id=len(nodes), parent=parent.id if parent else None, depth=depth,
            origin=None if not nodes else Origin(round=1, index=len(nodes)),
            action_ids=tokens(action_tokens),
            action_logprobs=[-rng.uniform(0.05, 3.0) for _ in range(action_tokens)],
            obs_ids=[] if last else tokens(obs_tokens),
            reward=float(rng.random() < 0.5) if last else 0.0,
            terminated=last,
        )
        nodes.append(node)
        return node

    out = []
    for task_index in range(tasks):
        prompt = tokens(prompt_tokens)
        for tree_index in range(trees):
            nodes: list[Node] = []
            kept = []
            for i in range(leaves):
                inner = [None] + [n for n in nodes if not n.is_leaf]
                node = grow(nodes, inner[0] if i == 0 else rng.choice(inner))
                while not node.is_leaf:
                    node = grow(nodes, node)
                kept.append(node.id)
            out.append(Tree(
                env_id="synthetic", task=Task(id=f"t{task_index}", prompt=""),
                task_index=task_index, tree_index=tree_index, seed=seed, mode="tree",
                policy="synthetic", prompt_ids=prompt, nodes=nodes, kept=kept,
            ))
    return out
