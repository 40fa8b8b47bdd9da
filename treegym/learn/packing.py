"""Pack trees into sequences with a tree attention mask, so a shared prefix is computed once.

Layout. The kept leaves of trees that share a prompt (a task's m trees, or its n chains)
form one trie: the prompt is its root, every node on a kept path is a segment of
`action_ids + obs_ids`, and nodes on no kept path are dropped. The trie is flattened in
depth-first pre-order, each segment's tokens contiguous.

Mask. Token q may attend to token k iff k is q itself, an earlier token of q's segment, or
a token of an ancestor segment. With `tin[k] = k` (the pre-order index) and `tout[k]` the
end of k's segment's subtree, that is `tin[k] <= tin[q] < tout[k]`. It is passed to the
model as a 4D additive float mask (0 attend, dtype-min masked): HF hands a 4D mask to the
attention unchanged, SDPA and eager both accept it, flash_attention_2 does not.

Positions. `position_ids` is a token's depth: its index in its own root-to-leaf path.
Together with the mask, each token then sees exactly what it saw in its own trajectory,
so its log-prob equals the per-leaf one.

Labels. A token is predicted by the logits of the token before it in its path: the
previous token of its segment, or, for a segment's first token, its parent segment's
last token (not the packed neighbour, which belongs to another branch).

Weights. A shared token stands for every kept leaf below it. `below[t, j]` records that
trained token t lies on leaf j's path; the loss turns per-leaf advantages into per-token
weights with it, which gives the same total gradient as one row per leaf.

Unsampled turns. A turn no policy sampled (`Node.sampled` is False: typed in `play`, or
scripted) has placeholder log-probs, so a PPO ratio against them means nothing. Its ids
stay in the sequence as context, and it contributes no targets; only a supervised step
(`sampled_only=False`) trains on its actions.

Splitting. A trie longer than `max_tokens` is split by leaves: kept leaves are taken in
depth-first order and cut into consecutive runs whose union of paths fits; each run is
its own sequence and repeats the ancestors it needs (at least the prompt). A leaf's
weights live in exactly one run, so the gradient is still exact; only the repeated
prefixes are computed more than once. A single path longer than `max_tokens` cannot be
split without changing what its tokens attend to, so it becomes a sequence of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..records import Node, Tree

NodeKey = tuple[int, int]  # (index of the tree in the batch, node id)
LeafRef = tuple[int, int]  # (index of the tree in the batch, leaf node id)


@dataclass
class PackedSequence:
    """One packed trie. Trained tokens are indexed by t in `targets` and friends."""

    input_ids: torch.Tensor  # [T] long
    position_ids: torch.Tensor  # [T] long: depth in the token's own path
    tout: torch.Tensor  # [T] long: end (exclusive) of the token's subtree in packed order
    pred_index: torch.Tensor  # [N] long: packed position whose logits predict target t
    targets: torch.Tensor  # [N] long: the sampled token ids (action tokens only)
    old_logprobs: torch.Tensor  # [N] float: behaviour log-probs recorded at rollout time
    below: torch.Tensor  # [N, L] bool: target t lies on the path of leaf `leaves[j]`
    leaves: list[LeafRef]  # the L leaves whose paths this sequence holds
    path_tokens: int  # tokens the same leaves take as separate rows

    def __len__(self) -> int:
        return int(self.input_ids.numel())

    @property
    def is_row(self) -> bool:
        """One path only: plain causal attention and positions 0..T-1 already describe it."""
        return len(self.leaves) == 1

    def attention_mask(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[1, 1, T, T] additive mask: 0 where `tin[k] <= tin[q] < tout[k]`, else dtype-min."""
        tin = torch.arange(len(self))
        allowed = (tin[None, :] <= tin[:, None]) & (tin[:, None] < self.tout[None, :])
        mask = torch.zeros(len(self), len(self), dtype=dtype)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]


def _path_keys(trees: Sequence[Tree], leaf: LeafRef) -> list[NodeKey]:
    i, node_id = leaf
    return [(i, n.id) for n in trees[i].path(node_id)]


def _tokens(node: Node) -> int:
    return len(node.action_ids) + len(node.obs_ids)


def _dfs_leaves(trees: Sequence[Tree], group: list[int]) -> list[LeafRef]:
    """The kept leaves of `group`'s trees in the order a pre-order walk meets them."""
    ordered = []
    for i in group:
        kept = set(trees[i].kept)
        children: dict[int | None, list[int]] = {}
        for node in trees[i].nodes:
            children.setdefault(node.parent, []).append(node.id)
        stack = sorted(children.get(None, []), reverse=True)
        while stack:
            node_id = stack.pop()
            if node_id in kept:
                ordered.append((i, node_id))
            stack += sorted(children.get(node_id, []), reverse=True)
    return ordered


def _build(trees: Sequence[Tree], leaves: list[LeafRef], sampled_only: bool) -> PackedSequence:
    """One sequence holding the union of `leaves`' paths under their common prompt."""
    nodes = {(i, n.id): n for i in {i for i, _ in leaves} for n in trees[i].nodes}
    children: dict[NodeKey | None, list[NodeKey]] = {}
    on_leaf: dict[NodeKey, list[int]] = {}
    for col, leaf in enumerate(leaves):
        parent: NodeKey | None = None
        for key in _path_keys(trees, leaf):
            if key not in on_leaf:
                on_leaf[key] = []
                children.setdefault(parent, []).append(key)
            on_leaf[key].append(col)
            parent = key
    prompt = trees[leaves[0][0]].prompt_ids

    ids: list[int] = list(prompt)
    positions: list[int] = list(range(len(prompt)))
    tout: list[int] = [0] * len(prompt)
    pred: list[int] = []
    targets: list[int] = []
    old: list[float] = []
    below_rows: list[list[int]] = []

    def visit(key: NodeKey, parent_last: int, depth: int) -> None:
        node = nodes[key]
        start = len(ids)
        ids.extend(node.action_ids + node.obs_ids)
        positions.extend(range(depth, depth + _tokens(node)))
        tout.extend([0] * _tokens(node))  # the subtree's end is known after the children
        trained = node.sampled or not sampled_only
        actions = zip(node.action_ids, node.action_logprobs, strict=True) if trained else ()
        for offset, (token, logprob) in enumerate(actions):
            pred.append(start + offset - 1 if offset else parent_last)
            targets.append(token)
            old.append(logprob)
            below_rows.append(on_leaf[key])
        last = len(ids) - 1 if len(ids) > start else parent_last
        for child in children.get(key, []):
            visit(child, last, depth + _tokens(node))
        tout[start : start + _tokens(node)] = [len(ids)] * _tokens(node)

    for key in children.get(None, []):
        visit(key, len(prompt) - 1, len(prompt))
    tout[: len(prompt)] = [len(ids)] * len(prompt)

    below = torch.zeros(len(targets), len(leaves), dtype=torch.bool)
    for t, cols in enumerate(below_rows):
        below[t, cols] = True
    return PackedSequence(
        input_ids=torch.tensor(ids, dtype=torch.long),
        position_ids=torch.tensor(positions, dtype=torch.long),
        tout=torch.tensor(tout, dtype=torch.long),
        pred_index=torch.tensor(pred, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        old_logprobs=torch.tensor(old, dtype=torch.float32),
        below=below,
        leaves=list(leaves),
        path_tokens=sum(_path_length(trees, leaf) for leaf in leaves),
    )


def _path_length(trees: Sequence[Tree], leaf: LeafRef) -> int:
    i, node_id = leaf
    return len(trees[i].prompt_ids) + sum(_tokens(n) for n in trees[i].path(node_id))


def _union_length(trees: Sequence[Tree], leaves: list[LeafRef]) -> int:
    sizes = {(i, n.id): _tokens(n) for i, leaf in leaves for n in trees[i].path(leaf)}
    return len(trees[leaves[0][0]].prompt_ids) + sum(sizes.values())


def rows(trees: Sequence[Tree], sampled_only: bool = True) -> list[PackedSequence]:
    """One sequence per kept leaf: the unpacked layout that packing must match."""
    return [_build(trees, [(i, leaf)], sampled_only)
            for i, tree in enumerate(trees) for leaf in tree.kept]


def pack(
    trees: Sequence[Tree], max_tokens: int | None = None, sampled_only: bool = True,
) -> list[PackedSequence]:
    """Pack the kept leaves of `trees` into as few sequences as the prompts and budget allow.

    Trees with identical `prompt_ids` share one root; see the module docstring for the
    layout, the mask, and how a trie over `max_tokens` is split.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, tree in enumerate(trees):
        if tree.kept:
            groups.setdefault(tuple(tree.prompt_ids), []).append(i)
    sequences = []
    for group in groups.values():
        run: list[LeafRef] = []
        for leaf in _dfs_leaves(trees, group):
            if run and max_tokens and _union_length(trees, [*run, leaf]) > max_tokens:
                sequences.append(_build(trees, run, sampled_only))
                run = []
            run.append(leaf)
        sequences.append(_build(trees, run, sampled_only))
    return sequences
