"""Synthetic tree batches shaped like Tree-GRPO's, for the learner's bench and tests.

Real rollouts need an env and a policy; checking that packing is exact and fast needs
only trees of the right shape. Each tree starts as one chain of `turns` nodes; every
further leaf branches from a random node of the tree (the prompt included, never a
leaf) and runs to the same depth, as Tree-GRPO's expansion does. Token ids, behaviour
log-probs and 0/1 rewards are random but fixed by `seed`.
"""

from __future__ import annotations

import random

from ..records import Node, Task, Tree


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
            branch="chain" if not nodes else f"r1x{len(nodes)}",
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
