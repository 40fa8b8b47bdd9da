"""SDPA attention that lets torch broadcast grouped KV heads instead of copying them.

transformers' `sdpa` path repeats K and V out to every query head whenever a mask is
given (it keeps `enable_gqa` for the unmasked case). Batched decoding of contexts of
different lengths always passes a padding mask, so every step copied the whole KV cache
of every layer several times over: with SmolLM2 (9 query heads over 3 KV heads) at 1,000
tokens and 8 branches that copy cost 5x the attention itself on CPU. torch's own
`enable_gqa` does the same arithmetic without the copy, with identical outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

NAME = "treegym_sdpa"


def gqa_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
             value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float = 0.0,
             scaling: float | None = None, is_causal: bool | None = None,
             **_: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: (B, H, T, D) in, (B, T, H, D) out."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = query.shape[2] > 1 and attention_mask is None and causal
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        is_causal=causal, enable_gqa=getattr(module, "num_key_value_groups", 1) > 1)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make NAME a valid `attn_implementation`, masked exactly as `sdpa` is."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, gqa_sdpa)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return NAME


@contextmanager
def attention(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Run `model`'s forwards inside the block with the registered attention `name`, then
    restore its own."""
    config = model.config
    own = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = own
