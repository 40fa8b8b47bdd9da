"""Tree attention in memory linear in the packed length, from the subtree-end vector alone.

Why. The dense path hands the model a [T, T] additive mask (built via [T, T] boolean
temporaries), once per forward: 1 GiB of fp32 at 16k packed tokens before any attention
runs, and real agent trees reach 8k-16k. An unfused kernel (eager, or SDPA's math
fallback) would also keep [H, T, T] scores per layer for backward.

The mask is one vector. In the depth-first layout (packing.py) key j is visible to query
i iff `j <= i < end[j]`, with `end = PackedSequence.tout` the end of j's node's subtree:
an ancestor's subtree contains i, a sibling's ended before i began, a descendant starts
after i. So the mask of any block of queries can be built on the fly from `end`.

Design: chunked queries under activation checkpointing. Queries are taken in blocks of
`BLOCK` rows. Block [a, b) can only see its own keys and the keys before a whose subtree
is still open at a (`end[j] > a`): the ancestors of query a, which include every
ancestor the block's later queries have before a. So it gathers just those keys, the
block's root-to-here path rather than all of K[:b], and masks them with a boolean mask
built from `end`. On a bushy tree that is the difference between attending over a path
and over the whole packed sequence. Each block runs SDPA (`enable_gqa` for grouped
heads), under `torch.utils.checkpoint`: the forward keeps only the block's output, and
backward rebuilds one block's keys and mask (and, on an unfused kernel, its scores) at a
time. So O(T) is kept and O(BLOCK * path) is transient, for the price of recomputing
each block's attention once in backward. The other options:
- flex_attention (torch 2.13) has no backward on CPU at all ("FlexAttention does not
  support backward on CPU"), so it cannot train there; on CUDA it needs torch.compile.
- a prefix/suffix cascade is exact only for a shared prompt over flat branches; deep
  trees need the general mask anyway.
Grouped KV heads go to SDPA as `enable_gqa`, broadcast rather than copied, as in
policy/gqa_attention.py.

Plumbing. NAME is a registered transformers attention implementation. Its mask function
builds nothing, and the attention function reads the `tree_end` keyword that transformers
forwards from the model call to every attention layer. `attending(model)` switches a
model to it for the duration of one forward; backward needs no model state, because each
block's recomputation closes over its own tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..policy import gqa_attention

NAME = "treegym_tree"
BLOCK = 512  # query rows per block: [BLOCK, T] scores per head live at once


def block_keys(end: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Positions of the only keys queries [start, stop) can see: those before `start`
    whose subtree is open at `start`, then the block's own."""
    before = torch.nonzero(end[:start] > start).squeeze(-1)
    return torch.cat([before, torch.arange(start, stop, device=end.device)])


def block_mask(end: torch.Tensor, start: int, stop: int,
               keys: torch.Tensor | None = None) -> torch.Tensor:
    """[stop - start, len(keys)] bool: query start + r may attend to key keys[c]
    (`k <= q < end[k]`); `keys` defaults to every position before `stop`."""
    q = torch.arange(start, stop, device=end.device)[:, None]
    k = torch.arange(stop, device=end.device) if keys is None else keys
    return (k[None, :] <= q) & (q < end[k][None, :])


def _block(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, end: torch.Tensor,
           start: int, dropout: float, scaling: float | None, gqa: bool) -> torch.Tensor:
    """Attention of query rows [start, start + len) over the keys they can see."""
    stop = start + query.shape[2]
    keys = block_keys(end, start, stop)
    return F.scaled_dot_product_attention(
        query, key[:, :, keys], value[:, :, keys], attn_mask=block_mask(end, start, stop, keys),
        dropout_p=dropout, scale=scaling, enable_gqa=gqa)


def tree_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   end: torch.Tensor, dropout: float = 0.0, scaling: float | None = None,
                   block: int | None = None) -> torch.Tensor:
    """(B, H, T, D) queries over (B, Hkv, T, D) keys and values under the tree mask of
    `end` [T]; returns (B, H, T, D). Checkpointed per block whenever grads are needed."""
    block = block or BLOCK
    gqa = query.shape[1] != key.shape[1]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    outs = []
    for start in range(0, query.shape[2], block):
        q = query[:, :, start : start + block]
        args = (q, key, value, end, start, dropout, scaling, gqa)
        outs.append(checkpoint(_block, *args, use_reentrant=False) if grad else _block(*args))
    return torch.cat(outs, dim=2)


def tree_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                           value: torch.Tensor, attention_mask: torch.Tensor | None,
                           dropout: float = 0.0, scaling: float | None = None,
                           tree_end: torch.Tensor | None = None,
                           **_: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: (B, H, T, D) in, (B, T, H, D) out."""
    if tree_end is None or attention_mask is not None:
        raise ValueError(f"{NAME} attends over a packed tree: call the model with tree_end=, "
                         "inside tree_attention.attending(model), and no attention_mask")
    out = tree_attention(query, key, value, tree_end, dropout, scaling)
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*_: Any, **__: Any) -> None:
    """The mask is `tree_end`, passed to the attention itself; none is built."""
    return None


def register() -> str:
    """Make NAME a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, tree_attention_forward)
    AttentionMaskInterface.register(NAME, _no_mask)
    return NAME


@contextmanager
def attending(model: torch.nn.Module) -> Iterator[None]:
    """Run `model`'s forwards inside the block with NAME attention, then restore its own."""
    register()
    with gqa_attention.attention(model, NAME):
        yield
