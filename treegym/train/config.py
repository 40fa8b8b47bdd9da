"""`TrainConfig`: everything a training run needs, from one YAML (or JSON) file.

Unknown keys are errors and every field is checked by pydantic, so a typo fails before
any model loads, with the file, the field and the reason in one line each; an unknown
key also gets the close valid ones and every valid key at its level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..distributed import RayConfig
from ..errors import ConfigError
from ..learn import LossConfig, OptimConfig
from ..rollout.samplers import ChainSampler, TreeSampler
from .keys import unknown_key


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarmStart(Strict):
    """Supervised steps on the env's scripted episodes before RL (`AgentEnv.demonstration`:
    Maze, PyCalc and the reasoning-gym envs have them)."""

    steps: int = Field(0, ge=0, description="Supervised steps; 0 skips the warm start.")
    episodes: int = Field(16, ge=1, description="Demonstration episodes per step.")
    optimal: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Share of scripted steps that are right (Maze: shortest-path moves, "
        "else random open directions; answer envs: the right answer, else a near miss), so "
        "the warm start teaches the format and leaves the solving to RL.",
    )
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of the warm start only.")


class LoraConfig(Strict):
    """Train low-rank adapters (peft's LoRA) instead of every weight: far less optimizer
    memory, and the base weights stay as loaded. Rollouts use base + adapters."""

    r: int = Field(16, ge=1, description="Rank of each adapter.")
    alpha: float = Field(32.0, gt=0, description="The update is scaled by alpha / r.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="On the adapters' input while training only; rollouts never drop, so "
        "anything above 0 makes the learner's log-probs differ from the sampler's.",
    )
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                 "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="Names of the linear layers that get adapters (Llama-like by default).",
    )


class CompareConfig(Strict):
    """`treegym train --compare`: seeds per mode, and the held-out evaluation of each
    trained policy. One seed says nothing about the spread between runs, so a difference
    between chain and tree is only worth reading against the spread across seeds."""

    seeds: int = Field(1, ge=1, description="Training runs per mode, with seeds seed, "
                       "seed + 1, ...; all start from the same weights (one shared warm "
                       "start) and stop at the same token_budget.")
    eval_episodes: int = Field(
        0, ge=0, description="Held-out tasks each trained policy plays after its run, with "
        "reset seeds 0 to N - 1, which no training batch or warm start uses (the seed "
        "split; it needs seed >= 0 and N <= 10000); 0 skips the evaluation.")
    eval_k: int = Field(1, ge=1, description="Episodes per held-out task; pass@k is over "
                        "these.")
    eval_temperature: float | None = Field(
        None, ge=0.0, description="Sampling temperature of the held-out evaluation; null: "
        "the training temperature.")


class TrainConfig(Strict):
    """One training run; every key is documented in docs/training.md."""

    env: str = Field(description="Registered env id, e.g. treegym/Maze-v0.")
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Options passed to the env on make, e.g. "
        "{size: 2, shaped: true} for Maze; they override the registered ones.")
    policy: str = Field("tiny", description="tiny, hf:PATH or vllm:PATH (synced each step).")
    rollout: ChainSampler | TreeSampler = Field(
        default_factory=ChainSampler, discriminator="mode",
        description="How each task is rolled out; `mode` (chain or tree) picks the variant "
        "and must be given whenever this is set.")
    advantage: Literal["grpo", "tree_grpo", "tree_grpo_intra"] = Field(
        "grpo", description="grpo: normalise within each task's leaves. tree_grpo: that plus "
        "normalising within each tree (needs rollout.mode tree). tree_grpo_intra: within "
        "each tree only.")
    tasks_per_step: int = Field(4, ge=1, description="Fresh tasks rolled out for each batch.")
    steps: int = Field(10, ge=1, description="Upper bound on RL steps.")
    token_budget: int | None = Field(
        None, ge=1, description="Stop once this many tokens were generated (for comparisons).")
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature of rollouts; "
                               "0 is greedy, which leaves a group's episodes nothing to vary.")
    max_new_tokens: int = Field(64, ge=1, description="Per turn.")
    epochs: int = Field(1, ge=1, description="Optimizer steps per batch.")
    max_tokens: int | None = Field(
        None, ge=1, description="Most tokens in one packed sequence; a batch over it is split "
        "into several whose gradients add up. null: one sequence per distinct prompt.")
    loss: LossConfig = Field(default_factory=LossConfig,
                             description="The clipped policy-gradient loss.")
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=1e-4),
                               description="AdamW for the RL steps.")
    warm_start: WarmStart = Field(default_factory=WarmStart,
                                  description="Supervised steps on the env's scripted "
                                  "episodes before RL (envs with a demonstration()).")
    init_weights: Path | None = Field(
        None, description="Start from these weights (safetensors), e.g. a shared warm start.")
    ray: RayConfig | None = Field(
        None, description="Roll out on Ray workers (docs/scaling.md); null runs in-process.")
    weight_sync: Literal["sync", "one-step-off"] = Field(
        "sync", description="sync: batch s+1 is rolled out with the weights of update s. "
        "one-step-off: it is rolled out with the weights before update s, while the learner "
        "runs update s (needs ray)."
    )
    seed: int = Field(0, description="Seeds the weights' init, sampling and which tasks "
                      "each batch gets (docs/training.md: the seed split).")
    out: Path = Field(Path("runs/train"), description="Run folder: metrics.jsonl, "
                      "trees.jsonl, checkpoints/ and the trained policy/.")
    checkpoint_every: int = Field(1, ge=1, description="Write a checkpoint every this many "
                                  "steps (and after the last).")
    lora: LoraConfig | None = Field(
        None, description="Train LoRA adapters (needs peft); null trains every weight.")
    compare: CompareConfig | None = Field(
        None, description="Settings of `treegym train --compare` (seeds, held-out eval); "
        "null: one seed per mode and no held-out eval.")
    stop_after_flat_steps: int | None = Field(
        3, ge=1, description="Stop with an error after this many steps in a row in which "
        "every group's reward was flat (all advantages 0, nothing learned); null never stops.")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.advantage != "grpo" and self.rollout.mode == "chain":
            raise ValueError(f"advantage {self.advantage!r} needs rollout.mode 'tree'")
        if self.weight_sync == "one-step-off" and self.ray is None:
            raise ValueError("weight_sync 'one-step-off' needs ray: in-process the rollout "
                             "policy is the module being trained, so it can't roll out during "
                             "an update; set ray (or --ray local) or use weight_sync 'sync'")
        return self


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read YAML (or JSON) from `path`, apply `overrides` (a mapping amends the file's
    section of that name, anything else replaces the value), and validate."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    for key, value in overrides.items():  # a section given on the command line amends the file's
        section = data.get(key)
        data[key] = {**section, **value} if isinstance(section, dict) and isinstance(
            value, dict) else value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: invalid training config:"]
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "config"
            problem = unknown_key(TrainConfig, e["loc"]) if e["type"] == "extra_forbidden" \
                else e["msg"]
            lines.append(f"  {where}: {problem}")
        raise ConfigError("\n".join(lines)) from None
