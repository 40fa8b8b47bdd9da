"""One optimizer step on a batch of trees: pack, score, loss, backward, clip, step.

The whole batch is one optimizer step; its sequences are micro-batches whose gradients
accumulate. Every loss weight is normalised over the whole batch (see loss.py), so the
step is the same whether the batch went in as one sequence per leaf (`packed=False`, the
reference) or as packed trees.

A packed tree would keep more activations than any one of its rows if it went through
the model in one pass; in training it is walked a trie segment at a time instead
(cascade.py), which computes each token once and keeps `alive_paths` longest paths'
activations at most. `cascade=False` takes the one dense pass, the oracle the tests hold
the cascade to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..records import Tree
from . import cascade as segmentwise
from .advantages import Advantages
from .forward import check_attention, score
from .loss import LossConfig, leaf_scales, sequence_loss
from .packing import PackedSequence, pack, rows


class OptimConfig(BaseModel):
    """AdamW and gradient clipping."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-5, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW's moment decays.")
    max_grad_norm: float = Field(1.0, gt=0, description="The gradient is scaled down to "
                                 "this global L2 norm before each step.")


class Learner:
    """Trains `model` in place; a policy that holds the same module sees every update."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss: LossConfig | None = None,
        optim: OptimConfig | None = None,
        *,
        reference: torch.nn.Module | None = None,
        packed: bool = True,
        max_tokens: int | None = None,
        cascade: bool = True,
        alive_paths: float = segmentwise.ALIVE,
    ) -> None:
        check_attention(model)
        if not alive_paths >= 1.0:
            raise ValueError(f"alive_paths must be >= 1.0 (a tree's longest path has to fit "
                             f"in backward), not {alive_paths!r}")
        self.cascade = cascade
        self.alive_paths = alive_paths
        self.model = model
        self.loss = loss or LossConfig()
        self.optim = optim or OptimConfig()
        self.reference = reference
        if self.loss.kl_coef > 0 and reference is None:
            raise ValueError("kl_coef > 0 needs a frozen reference model")
        self.packed = packed
        self.max_tokens = max_tokens
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=self.optim.lr, betas=self.optim.betas,
            weight_decay=self.optim.weight_decay,
        )

    def sequences(self, trees: Sequence[Tree], sampled_only: bool = True) -> list[PackedSequence]:
        """The batch as sequences; unsampled turns are context only unless `sampled_only`
        is False (see packing.py)."""
        if self.packed:
            return pack(trees, self.max_tokens, sampled_only)
        return rows(trees, sampled_only)

    def backward(self, trees: Sequence[Tree], advantages: Advantages) -> dict[str, float]:
        """Accumulate the batch loss's gradient into `.grad`; return the batch's metrics."""
        self.model.train()
        scales = leaf_scales(trees, self.loss.aggregation)
        metrics: dict[str, float] = defaultdict(float)
        for seq in self.sequences(trees):
            ref = None
            if self.reference is not None and self.loss.kl_coef > 0:
                with torch.no_grad():
                    ref = score(self.reference, seq)[0]

            def loss_of(index: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor,
                        seq: PackedSequence = seq, ref: torch.Tensor | None = ref) -> torch.Tensor:
                loss, parts = sequence_loss(seq, logp, entropy, advantages, scales, self.loss,
                                            None if ref is None else ref[index], index)
                for key, value in parts.items():
                    metrics[key] += value
                return loss

            self._backpropagate(seq, loss_of)
            metrics["tokens"] += len(seq)
            metrics["row_tokens"] += seq.path_tokens
        return dict(metrics)

    def _backpropagate(self, seq: PackedSequence, loss_of: segmentwise.LossOf) -> None:
        """Score `seq` and backpropagate `loss_of` its targets: a tree by segments, where
        cascade.py applies, else in one pass."""
        if self.cascade and segmentwise.applies(self.model, seq):
            segmentwise.backward(self.model, seq, loss_of, self.alive_paths)
            return
        logp, entropy = score(self.model, seq)
        loss_of(torch.arange(len(logp), device=logp.device), logp, entropy).backward()

    def step(self, trees: Sequence[Tree], advantages: Advantages) -> dict[str, float]:
        """One optimizer step on the batch: gradients, clipping, AdamW."""
        self.optimizer.zero_grad(set_to_none=True)
        metrics = self.backward(trees, advantages)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.optim.max_grad_norm)
        self.optimizer.step()
        metrics["grad_norm"] = float(norm)
        return metrics

    def sft_step(self, trees: Sequence[Tree]) -> dict[str, float]:
        """One supervised step: maximise the log-likelihood of the kept leaves' actions.

        For warm starts on demonstrations; token-mean over all rows, packed like `step`.
        Scripted and typed turns are what it learns from, so they are trained here.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        scales = leaf_scales(trees, "token-mean", sampled_only=False)
        nll = 0.0
        for seq in self.sequences(trees, sampled_only=False):
            scale = torch.tensor([scales[leaf] for leaf in seq.leaves])
            weight = seq.below.float() @ scale

            def loss_of(index: torch.Tensor, logp: torch.Tensor, _: torch.Tensor,
                        weight: torch.Tensor = weight) -> torch.Tensor:
                nonlocal nll
                loss = -(weight[index.cpu()].to(logp.device) * logp).sum()
                nll += float(loss.detach())
                return loss

            self._backpropagate(seq, loss_of)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.optim.max_grad_norm)
        self.optimizer.step()
        return {"nll": nll, "grad_norm": float(norm)}
