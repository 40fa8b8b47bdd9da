"""Score a packed sequence: the log-prob and entropy of each trained token under a model.

The model is any HF causal LM whose attention takes a 4D mask (`sdpa` or `eager`). A
single-path sequence goes through the model's own causal path, with no custom mask; a
tree goes in with its tree mask and depth positions. Only the rows that predict a trained
token reach the LM head (`logits_to_keep` takes an index tensor), so a long observation
costs no vocabulary projection.

Two tree paths with identical results. Dense: the [T, T] mask from
`PackedSequence.attention_mask`, through the model's own attention; fastest while T is
small, and the oracle in tests. Memory-linear (tree_attention.py): the model gets the
O(T) subtree-end vector and attends in checkpointed query blocks; `score` takes it from
`LINEAR_FROM` packed tokens on, on any device, since the dense mask alone is quadratic
there whatever the kernel.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from . import tree_attention
from .packing import PackedSequence

TREE_ATTENTION = ("sdpa", "eager", "treegym_sdpa")  # the last: policy/gqa_attention.py
# Packed tokens from which trees attend memory-linearly. Below, the fp32 mask is under
# 64 MiB and the dense path was ~15% faster (tiny model, 4k tokens, CPU); at 16k the
# linear path's forward+backward peak was 1.0 GiB lower. None: always dense.
LINEAR_FROM: int | None = 4096


def check_attention(model: torch.nn.Module) -> None:
    """Refuse attention kernels that ignore or reject a 4D tree mask."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in TREE_ATTENTION:
        raise ValueError(
            f"packed-tree training needs attn_implementation in {TREE_ATTENTION}, not {impl!r}: "
            "flash_attention_2 rejects 4D masks; load the model with "
            "attn_implementation='sdpa'"
        )


def linear(seq: PackedSequence) -> bool:
    """Whether `score` takes the memory-linear path for `seq` (None: never)."""
    return not seq.is_row and LINEAR_FROM is not None and len(seq) >= LINEAR_FROM


def score(model: torch.nn.Module, seq: PackedSequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [N] of `seq.targets` and the entropies [N] of their distributions (fp32)."""
    device = next(model.parameters()).device
    inputs: dict[str, torch.Tensor] = {"input_ids": seq.input_ids[None].to(device)}
    path = nullcontext()
    if linear(seq):
        inputs["tree_end"] = seq.tout.to(device)
        inputs["position_ids"] = seq.position_ids[None].to(device)
        path = tree_attention.attending(model)
    elif not seq.is_row:
        dtype = next(model.parameters()).dtype
        inputs["attention_mask"] = seq.attention_mask(dtype).to(device)
        inputs["position_ids"] = seq.position_ids[None].to(device)
    with path:
        logits = model(**inputs, logits_to_keep=seq.pred_index.to(device),
                       use_cache=False).logits
    logp_all = F.log_softmax(logits[0].float(), dim=-1)
    logp = logp_all.gather(-1, seq.targets.to(device)[:, None]).squeeze(-1)
    with torch.no_grad():
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy
