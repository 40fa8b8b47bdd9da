"""Per-step metrics: what each line of metrics.jsonl holds, and the file that holds them.

The record is a pydantic model so every field has a written meaning (docs/training.md is
generated from it) and the learner can't add a figure nobody documented: an unknown
one fails the first step.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..records import write_jsonl


class StepMetrics(BaseModel):
    """One RL step: step s trains on batch s, which was rolled out before the step began.

    The learner's figures (pg_loss to grad_norm) are the last epoch's when epochs > 1, and
    token averages weigh each token as the loss does (loss.aggregation)."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(description="RL step, from 0: the number of RL updates before it.")
    reward: float = Field(description="Mean reward of the batch's kept leaves.")
    generated: int = Field(description="Tokens the rollouts generated so far, cumulative over "
                           "batches 0 to s: the x-axis of a chain/tree comparison.")
    leaves: int = Field(description="Kept leaves in the batch: the episodes trained on.")
    policy_version: int | None = Field(
        description="Optimizer updates the weights that rolled out this batch had seen: s "
        "with weight_sync sync, s - 1 with one-step-off.")
    zero_variance_groups: float = Field(
        description="Fraction of advantage groups (a task's leaves; a tree's for "
        "tree_grpo_intra) whose rewards were all equal, so all their advantages are 0. At "
        "1.0 the update has no learning signal and the trainer warns.")
    pg_loss: float = Field(description="Clipped policy-gradient loss of the batch.")
    clip_frac: float = Field(description="Share of action tokens whose ratio was clipped.")
    entropy: float = Field(description="Mean entropy of the policy at the action tokens.")
    ratio: float = Field(description="Mean probability ratio new / rollout policy (1 at the "
                         "first epoch when the sync is right).")
    logprob_gap: float = Field(
        description="Mean |log-prob now - log-prob at rollout|: near 0 at the first epoch "
        "unless the rollout engine sampled with other weights than the learner's.")
    kl: float | None = Field(None, description="k3 KL to the frozen reference; only present "
                             "when loss.kl_coef > 0.")
    tokens: int = Field(description="Tokens the learner scored this step, shared prefixes "
                        "counted once (packed).")
    row_tokens: int = Field(description="Tokens the same leaves take as separate rows; "
                            "1 - tokens / row_tokens is what packing saved.")
    grad_norm: float = Field(description="Global gradient L2 norm before clipping.")
    learn_seconds: float = Field(description="Wall time of this step's advantages and "
                                 "update, all epochs.")
    rollout_seconds: float = Field(
        description="Wall time of rolling out the next batch (s + 1) in this step; with "
        "one-step-off it overlaps learn_seconds.")
    step_seconds: float = Field(description="Wall time of the whole step: update, rollout, "
                                "weight sync and logs; not the checkpoint written after "
                                "this record, so a crash can't lose the record.")


class MetricsLog:
    """metrics.jsonl in the run folder (+ TensorBoard when installed); resume-safe."""

    def __init__(self, out: Path, resume_step: int | None) -> None:
        self.path = out / "metrics.jsonl"
        lines = self.path.read_text().splitlines() if resume_step and self.path.exists() else []
        kept = [ln for ln in lines if json.loads(ln).get("step", -1) < (resume_step or 0)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(ln + "\n" for ln in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            self.tb = None

    def write(self, record: dict[str, object]) -> None:
        write_jsonl(self.path, [record])
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key, value, record["step"])
