"""The training loop: collect → advantages → update → sync, with exact resume.

What "sync" means depends on the rollout backend (actor.py) and on where rollouts run
(collector.py).

Order within a step s, with `weight_sync: sync`: update on batch s, sync, collect batch
s + 1 with the new weights, then checkpoint (weights, optimizer, RNG, and batch s + 1).
With `one-step-off`, batch s + 1 is collected on the Ray workers, with the weights from
before update s, while the learner runs update s; then the workers get the new weights
and the same checkpoint is written. Either way the checkpoint after step s holds the
weights of version s + 1 and the batch the learner takes next, so resume is exact in
both modes. See checkpoint.py for why the next batch is part of the checkpoint.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..learn import ESTIMATORS, Learner, OptimConfig
from ..learn.advantages import Advantages, node_advantages
from ..records import Tree, write_jsonl
from .actor import Actor, make_actor
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .collector import Collector, make_collector
from .config import TrainConfig
from .demos import maze_demonstrations

Log = Callable[[dict[str, Any]], None]


def mean_reward(trees: list[Tree]) -> float:
    rewards = [tree.reward(leaf) for tree in trees for leaf in tree.kept]
    return sum(rewards) / len(rewards) if rewards else 0.0


def _initial_weights(config: TrainConfig, actor: Actor, log: Log) -> None:
    """Load `init_weights` if given, then run the supervised warm start if configured."""
    if config.init_weights is not None:
        actor.load_full(config.init_weights)
    ws = config.warm_start
    if not ws.steps:
        return
    sft = Learner(actor.model, optim=OptimConfig(lr=ws.lr), max_tokens=config.max_tokens)
    for step in range(ws.steps):
        demos = maze_demonstrations(config.env, actor.tokenizer, ws.episodes,
                                    seed=10**8 + step * ws.episodes, optimal=ws.optimal,
                                    env_kwargs=config.env_kwargs)
        log({"phase": "warm_start", "step": step, **sft.sft_step(demos)})


def warm_start_weights(config: TrainConfig, path: Path, log: Log | None = None) -> Path:
    """Run `config`'s warm start alone and save the weights to `path`, so several runs
    (e.g. chain and tree in a comparison) can start from the very same policy. Trained
    LoRA adapters are merged in; each run then starts fresh ones on top."""
    torch.manual_seed(config.seed)
    actor = make_actor(config.policy, config.lora)
    try:
        _initial_weights(config, actor, log or (lambda record: None))
        path.parent.mkdir(parents=True, exist_ok=True)
        actor.save_full(path)
    finally:
        actor.close()
    return path


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

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key, value, record["step"])


class TreesLog:
    """trees.jsonl in the run folder: each step's batch with the advantages it was trained
    with (`node_advantages`), for `treegym view`; resume-safe.

    Trees have no step field (their `policy_version` repeats in one-step-off mode), so a
    checkpoint records the file's size instead (`state["trees_bytes"]`), and resuming cuts
    the file back to it, dropping the steps the resumed run writes again.
    """

    def __init__(self, out: Path, resume_bytes: int) -> None:
        self.path = out / "trees.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            self.size = min(resume_bytes, fh.tell())  # "ab" opens at the end
            fh.truncate(self.size)

    def write(self, batch: list[Tree], advantages: Advantages) -> None:
        write_jsonl(self.path, [
            tree.model_copy(update={"advantages": node_advantages(tree, leaf_advantages)})
            for tree, leaf_advantages in zip(batch, advantages, strict=True)
        ])
        self.size = self.path.stat().st_size


def train(config: TrainConfig, *, resume: bool = False, log: Log | None = None) -> list[dict]:
    """Run (or resume) the loop; return the per-step metrics of this invocation."""
    torch.manual_seed(config.seed)
    actor = make_actor(config.policy, config.lora)
    try:
        return _run(config, actor, resume, log or (lambda record: None))
    finally:
        actor.close()


def _run(config: TrainConfig, actor: Actor, resume: bool, log: Log) -> list[dict]:
    model = actor.model
    reference = None
    if config.loss.kl_coef > 0:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    learner = Learner(model, config.loss, config.optim, reference=reference,
                      max_tokens=config.max_tokens)
    checkpoints = config.out / "checkpoints"
    if resume:
        path = latest_checkpoint(checkpoints)
        if path is None:
            raise ConfigError(f"--resume: no checkpoint under {checkpoints}")
        state, batch = load_checkpoint(path, model, learner.optimizer)
    else:
        _initial_weights(config, actor, log)
    collector = make_collector(config, actor)
    try:
        collector.sync(version=state["step"] if resume else 0)
        if not resume:
            batch, generated = collector.collect(0)
            state = {"step": 0, "generated": generated, "batch_generated": generated,
                     "trees_bytes": 0}
            save_checkpoint(checkpoints, 0, model, learner.optimizer, state, batch)
        history = _steps(config, learner, collector, state, batch, resume, log)
    finally:
        collector.close()
    actor.save_pretrained(config.out / "policy")
    return history


def _steps(config: TrainConfig, learner: Learner, collector: Collector, state: dict[str, int],
           batch: list[Tree], resume: bool, log: Log) -> list[dict]:
    """Steps `state["step"]` up to `config.steps` (or the token budget)."""
    metrics_log = MetricsLog(config.out, state["step"] if resume else None)
    # Checkpoints from before trees.jsonl existed have no size: start the file afresh.
    trees_log = TreesLog(config.out, state.get("trees_bytes", 0) if resume else 0)
    estimator = ESTIMATORS[config.advantage]
    ahead = ThreadPoolExecutor(1) if config.weight_sync == "one-step-off" else None
    history = []
    try:
        for step in range(state["step"], config.steps):
            if config.token_budget and state["generated"] - state["batch_generated"] >= \
                    config.token_budget:
                break
            advantages = estimator(batch)
            next_batch = ahead.submit(collector.collect, step + 1) if ahead else None
            for _ in range(config.epochs):
                metrics = learner.step(batch, advantages)
            trees_log.write(batch, advantages)
            record = {"step": step, "reward": mean_reward(batch),
                      "generated": state["generated"], "leaves": sum(len(t.kept) for t in batch),
                      "policy_version": batch[0].policy_version, **metrics}
            metrics_log.write(record)
            history.append(record)
            log(record)
            if next_batch is not None:
                batch, generated = next_batch.result()
                collector.sync(version=step + 1)
            else:
                collector.sync(version=step + 1)
                batch, generated = collector.collect(step + 1)
            state = {"step": step + 1, "generated": state["generated"] + generated,
                     "batch_generated": generated, "trees_bytes": trees_log.size}
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                save_checkpoint(config.out / "checkpoints", step + 1, learner.model,
                                learner.optimizer, state, batch)
    finally:
        if ahead is not None:
            ahead.shutdown(wait=False, cancel_futures=True)
    return history
