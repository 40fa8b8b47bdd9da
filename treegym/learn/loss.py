"""The clipped policy-gradient loss on packed sequences, with per-leaf weights made exact.

Per leaf row i and action token t, PPO-clip with separate clip bounds is

    l_it = -min(r_t A_i, clip(r_t, 1 - clip_low, 1 + clip_high) A_i),  r_t = exp(logp_t - old_t)

and the batch loss is sum_i sum_t s_i l_it (+ kl_coef · s_i k3_t), where s_i is the
aggregation's weight: token-mean s_i = 1 / (action tokens of all rows), sequence-mean
s_i = 1 / (|i| · number of rows). A packed token is shared by the leaves below it and has
the same r_t for all of them. Because the min is not linear in A, the leaves are summed by
sign: for A_i > 0, l_it = -A_i min(r_t, 1 + clip_high); for A_i < 0,
l_it = |A_i| max(r_t, 1 - clip_low). So a packed token carries
`gain = w+ · min(r, clip(r)) - w- · max(r, clip(r))` with w± = sum of s_i·max(±A_i, 0)
over its leaves, which equals the per-leaf sum term by term, ratio ≠ 1 included.

The KL to a frozen reference uses the k3 estimator, k3 = exp(ref - logp) - (ref - logp) - 1,
which is non-negative and unbiased for KL(pi || ref) under samples from pi.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..records import Tree
from .advantages import Advantages
from .packing import LeafRef, PackedSequence


class LossConfig(BaseModel):
    """How the policy-gradient loss is formed."""

    model_config = ConfigDict(extra="forbid")

    clip_low: float = Field(0.2, ge=0.0, lt=1.0, description="Ratio floor is 1 - clip_low.")
    clip_high: float = Field(0.28, ge=0.0, description="Ratio ceiling is 1 + clip_high.")
    kl_coef: float = Field(0.0, ge=0.0, description="Weight of k3 KL to the reference; 0: off.")
    aggregation: Literal["token-mean", "seq-mean"] = Field(
        "token-mean", description="token-mean: every action token of the batch weighs the "
        "same. seq-mean: every kept leaf weighs the same, its tokens sharing its weight.")


def leaf_scales(
    trees: Sequence[Tree], aggregation: str, sampled_only: bool = True,
) -> dict[LeafRef, float]:
    """s_i for every kept leaf: the weight one of its trained tokens has in the batch loss.
    Only sampled turns' tokens count, unless `sampled_only` is False (supervised steps)."""
    lengths = {
        (i, leaf): sum(len(n.action_ids) for n in tree.path(leaf)
                       if n.sampled or not sampled_only)
        for i, tree in enumerate(trees)
        for leaf in tree.kept
    }
    if aggregation == "token-mean":
        total = sum(lengths.values())
        return {leaf: 1.0 / total if total else 0.0 for leaf in lengths}
    rows = sum(1 for n in lengths.values() if n)
    return {leaf: 1.0 / (n * rows) if n else 0.0 for leaf, n in lengths.items()}


def sequence_loss(
    seq: PackedSequence,
    logp: torch.Tensor,
    entropy: torch.Tensor,
    advantages: Advantages,
    scales: dict[LeafRef, float],
    config: LossConfig,
    ref_logp: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """This sequence's share of the batch loss, and its share of each metric (sums).

    `logp`, `entropy` and `ref_logp` cover the targets at `index` (None: all of them);
    every term is a sum over tokens, so the shares of a partition add up to the whole
    (cascade.py backpropagates a tree a segment at a time on this).
    """
    device = logp.device
    at = slice(None) if index is None else index.cpu()
    adv = torch.tensor([advantages[i][leaf] for i, leaf in seq.leaves], device=device)
    scale = torch.tensor([scales[leaf] for leaf in seq.leaves], device=device)
    below = seq.below[at].to(device=device, dtype=torch.float32)
    w_pos, w_neg = below @ (adv.clamp(min=0) * scale), below @ ((-adv).clamp(min=0) * scale)
    weight = below @ scale  # each token's share of the aggregation, for metrics and KL
    n_pos, n_neg = below @ ((adv > 0) * scale), below @ ((adv < 0) * scale)

    old = seq.old_logprobs[at].to(device)
    ratio = torch.exp(logp - old)
    clipped = ratio.clamp(1 - config.clip_low, 1 + config.clip_high)
    gain = w_pos * torch.minimum(ratio, clipped) - w_neg * torch.maximum(ratio, clipped)
    loss = -gain.sum()
    metrics = {"pg_loss": float(loss.detach())}
    with torch.no_grad():
        clip_hits = n_pos * (ratio > 1 + config.clip_high) + n_neg * (ratio < 1 - config.clip_low)
        metrics["clip_frac"] = float(clip_hits.sum())
        metrics["entropy"] = float((weight * entropy).sum())
        metrics["ratio"] = float((weight * ratio).sum())
        # Mean |logp - old| shows whether the rollout engine sampled with the weights the
        # learner has: at the first epoch only numerics separate them, so a stale or broken
        # weight sync (e.g. into vLLM) shows up as a large gap.
        metrics["logprob_gap"] = float((weight * (logp - old).abs()).sum())
    if ref_logp is not None:
        delta = ref_logp - logp
        k3 = (torch.exp(delta) - delta - 1) * weight
        loss = loss + config.kl_coef * k3.sum()
        metrics["kl"] = float(k3.sum().detach())
    return loss, metrics
