"""Score a packed sequence: the log-prob and entropy of each trained token under a model.

The model is any HF causal LM whose attention takes a 4D mask (`sdpa` or `eager`). A
single-path sequence goes through the model's own causal path, with no custom mask; a
tree goes in with its tree mask and depth positions. Only the rows that predict a trained
token reach the LM head (`logits_to_keep` takes an index tensor), so a long observation
costs no vocabulary projection.

Two tree paths with identical results. Dense: the [T, T] mask from
`PackedSequence.attention_mask`, through the model's own attention; fastest while T is
small, and the oracle in tests. Memory-linear: `score` takes it from `LINEAR_FROM` packed
tokens on, on any device, since the dense mask alone is quadratic there whatever the
kernel. There the model gets the O(T) subtree-end vector and attends in checkpointed query
blocks (tree_attention.py), and two more things that grow with T are cut, because on a
real model they, not the mask, decide whether a long tree fits: every decoder layer is
checkpointed (SmolLM2 keeps ~2 MiB a token for backward otherwise: 30 GiB at 16k), and
the LM head runs in checkpointed chunks of `HEAD_CHUNK` trained positions (a 49k-word
vocabulary is 190 KiB of fp32 logits per position, kept twice for backward). The price is
one more forward per layer in backward; it is paid only where the dense path could not
run anyway.

In training, a tree below `LINEAR_FROM` is not scored here in one pass but walked a
segment at a time (cascade.py), which keeps one path's activations; the dense pass is
its oracle and serves scoring without gradients.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import tree_attention
from .packing import PackedSequence

TREE_ATTENTION = ("sdpa", "eager", "treegym_sdpa")  # the last: policy/gqa_attention.py
# Packed tokens from which trees attend memory-linearly. Below, the fp32 mask is under
# 64 MiB and the dense path was ~15% faster (tiny model, 4k tokens, CPU); at 16k the
# linear path's forward+backward peak was 1.0 GiB lower. None: always dense.
LINEAR_FROM: int | None = 4096
HEAD_CHUNK = 64  # trained positions per LM-head chunk where layers are checkpointed: [64, V]
# fp32 logits, log-softmax and their gradient live at once (36 MiB at SmolLM2's 49k words),
# no more than the head of one short row keeps


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
    targets = seq.targets.to(device)
    if linear(seq):
        return _score_checkpointed(model, seq, inputs | {
            "tree_end": seq.tout.to(device), "position_ids": seq.position_ids[None].to(device)})
    if not seq.is_row:
        dtype = next(model.parameters()).dtype
        inputs["attention_mask"] = seq.attention_mask(dtype).to(device)
        inputs["position_ids"] = seq.position_ids[None].to(device)
    logits = model(**inputs, logits_to_keep=seq.pred_index.to(device), use_cache=False).logits
    return logp_entropy(logits[0], targets)


def logp_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of `targets` under `logits` [N, V] (fp32), and the entropies, no grad."""
    logp_all = F.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, targets[:, None]).squeeze(-1)
    with torch.no_grad():
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def plain_head(model: torch.nn.Module) -> None:
    """Refuse models whose logits are not head(last hidden state): the paths that call
    the decoder and the head themselves would score them wrongly."""
    config = model.config
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        raise ValueError(f"{config.model_type} post-processes its logits, which the "
                         "memory-linear and cascade paths do not; set "
                         "forward.LINEAR_FROM = None and Learner(cascade=False)")


def _head_chunk(head: torch.nn.Module, hidden: torch.Tensor,
                targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logp_entropy(head(hidden), targets)


def _score_checkpointed(model: torch.nn.Module, seq: PackedSequence,
                        inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The memory-linear path: tree attention, checkpointed decoder layers and a chunked
    LM head.

    It calls the decoder and the head itself, so it assumes logits = head(last hidden
    state), true of the Llama and Qwen2 families; models that scale or soft-cap their
    logits are refused rather than scored wrongly.
    """
    plain_head(model)
    with tree_attention.attending(model), _layer_checkpointing(model):
        hidden = model.get_decoder()(**inputs, use_cache=False).last_hidden_state[0]
    hidden = hidden[seq.pred_index.to(hidden.device)]
    targets = seq.targets.to(hidden.device)
    head = model.get_output_embeddings()
    grad = torch.is_grad_enabled() and hidden.requires_grad
    parts = [checkpoint(_head_chunk, head, hidden[i : i + HEAD_CHUNK],
                        targets[i : i + HEAD_CHUNK], use_reentrant=False) if grad
             else _head_chunk(head, hidden[i : i + HEAD_CHUNK], targets[i : i + HEAD_CHUNK])
             for i in range(0, len(targets), HEAD_CHUNK)]
    if not parts:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@contextmanager
def _layer_checkpointing(model: torch.nn.Module) -> Iterator[None]:
    """Checkpoint every decoder layer for one forward, unless the model already does.

    Backward re-runs each layer after `attending` has restored the model's own attention,
    so the recomputation re-enters it (`context_fn`); otherwise it would attend causally.
    """
    if not model.training or getattr(model, "is_gradient_checkpointing", True):
        yield
        return
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={
        "use_reentrant": False,
        "context_fn": lambda: (nullcontext(), tree_attention.attending(model))})
    try:
        yield
    finally:
        model.gradient_checkpointing_disable()
