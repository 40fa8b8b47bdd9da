"""Advantages: one number per kept leaf, computed from tree records alone.

Every estimator here returns `list[dict[int, float]]`, parallel to the trees it was
given: `out[i][leaf]` is the advantage of leaf `leaf` of `trees[i]`, for each leaf in
`trees[i].kept`. A leaf's reward is its episode return, `Tree.reward(leaf)`. The learner
broadcasts a leaf's advantage to every action token on its path; observation tokens get
none.

Normalisation follows Tree-GRPO (and verl's GRPO) exactly, because reproducing their
numbers is the point:

    norm(r_i; G) = (r_i - mean(G)) / (std(G) + eps)

with the unbiased std (divide by |G| - 1). A group with one member has no spread to
normalise by, so it gets mean 0 and std 1: norm(r) = r / (1 + eps). A group whose rewards
are all equal gets 0 for every member (0 / eps), never NaN.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from ..records import Tree

EPS = 1e-6

Advantages = list[dict[int, float]]


def normalise(rewards: Sequence[float], eps: float = EPS) -> list[float]:
    """(r - mean) / (std + eps) with the unbiased std; one member: mean 0, std 1."""
    n = len(rewards)
    if n == 0:
        return []
    if n == 1:
        mean, std = 0.0, 1.0
    else:
        mean = sum(rewards) / n
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
    return [(r - mean) / (std + eps) for r in rewards]


def _grouped(trees: Sequence[Tree], key, eps: float) -> Advantages:
    """Normalise leaf rewards within groups of trees sharing `key(tree)`."""
    members: dict[object, list[tuple[int, int]]] = defaultdict(list)
    for i, tree in enumerate(trees):
        members[key(tree)] += [(i, leaf) for leaf in tree.kept]
    out: Advantages = [{} for _ in trees]
    for group in members.values():
        rewards = [trees[i].reward(leaf) for i, leaf in group]
        for (i, leaf), a in zip(group, normalise(rewards, eps), strict=True):
            out[i][leaf] = a
    return out


def _task(tree: Tree) -> tuple[str, int]:
    return tree.env_id, tree.task_index


def _tree(tree: Tree) -> tuple[str, int, int]:
    return tree.env_id, tree.task_index, tree.tree_index


def grpo(trees: Sequence[Tree], eps: float = EPS) -> Advantages:
    """GRPO: A_i = norm(r_i; all kept leaves of the same task).

    A task is `(env_id, task_index)`; with chain rollouts its leaves are its n chains,
    with tree rollouts all m·k kept leaves of its m trees.
    """
    return _grouped(trees, _task, eps)


def tree_grpo_intra(trees: Sequence[Tree], eps: float = EPS) -> Advantages:
    """Intra-tree term only: A_i = norm(r_i; the k kept leaves of leaf i's own tree)."""
    return _grouped(trees, _tree, eps)


def tree_grpo(trees: Sequence[Tree], eps: float = EPS) -> Advantages:
    """Tree-GRPO: A_i = norm(r_i; the task's m·k leaves) + norm(r_i; its tree's k leaves).

    The unweighted sum of the inter-tree (GRPO over the task) and intra-tree terms, as in
    the paper's `adv_estimator == 'tree'`. The intra term contrasts sibling subtrees, which
    is where the step-level signal comes from.
    """
    inter, intra = grpo(trees, eps), tree_grpo_intra(trees, eps)
    return [{leaf: a[leaf] + b[leaf] for leaf in a} for a, b in zip(inter, intra, strict=True)]


def node_advantages(tree: Tree, leaf_advantages: dict[int, float]) -> dict[int, float]:
    """Node id -> advantage its action tokens are trained with, for `Tree.advantages`.

    Packed training applies each kept leaf's term to every token on its path once
    (packing.py's `below`), so a node gets the sum over the kept leaves below it: a leaf
    its own, an inner node its subtree's (its gradient weight at ratio 1, exactly under
    token-mean aggregation). Nodes on no kept path are not trained and get no entry.
    """
    out: dict[int, float] = {}
    for leaf in tree.kept:
        for node in tree.path(leaf):
            out[node.id] = out.get(node.id, 0.0) + leaf_advantages[leaf]
    return out


ESTIMATORS = {"grpo": grpo, "tree_grpo": tree_grpo, "tree_grpo_intra": tree_grpo_intra}
# Each estimator's widest group: where it finds no spread, none of its terms does either.
GROUPS = {"grpo": _task, "tree_grpo": _task, "tree_grpo_intra": _tree}
FLAT = 1e-6  # equal rewards normalise to ~1e-11 (rounding over eps), not exactly 0


def flat_groups(trees: Sequence[Tree], advantages: Advantages, estimator: str) -> tuple[int, int]:
    """(groups whose kept leaves all got advantage ~0, groups) for `estimator`'s groups.

    A flat group's rewards were all equal, so it adds nothing to the gradient; when every
    group is flat the update learns nothing at all, which is what a trainer warns about.
    """
    key = GROUPS[estimator]
    spread: dict[object, bool] = {}
    for i, tree in enumerate(trees):
        for leaf in tree.kept:
            spread[key(tree)] = spread.get(key(tree), False) or abs(advantages[i][leaf]) > FLAT
    return sum(not moved for moved in spread.values()), len(spread)
