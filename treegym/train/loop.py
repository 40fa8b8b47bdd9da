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
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, FlatRewardError
from ..learn import ESTIMATORS, Learner, OptimConfig
from ..learn.advantages import Advantages, flat_groups, node_advantages
from ..records import Tree, write_jsonl
from .actor import Actor, make_actor
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .collector import Collector, make_collector
from .config import TrainConfig
from .demos import demonstrations, require_demonstrations
from .metrics import MetricsLog, StepMetrics

Log = Callable[[dict[str, Any]], None]
logger = logging.getLogger(__name__)
# Warm-start demonstrations reset from here, far above any batch's seeds (collector.py).
WARM_START_SEED = 10**8


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
        demos = demonstrations(config.env, actor.tokenizer, ws.episodes,
                               seed=WARM_START_SEED + step * ws.episodes, optimal=ws.optimal,
                               env_kwargs=config.env_kwargs)
        log({"phase": "warm_start", "step": step, **sft.sft_step(demos)})


def warm_start_weights(config: TrainConfig, directory: Path, log: Log | None = None) -> Path:
    """Run `config`'s warm start alone and save the policy as a Hugging Face checkpoint in
    `directory`, so several runs (e.g. chain and tree in a comparison) can start from the
    very same weights, and `hf:DIR` can evaluate or benchmark that starting policy. Trained
    LoRA adapters are merged in; each run then starts fresh ones on top. Returns the
    weights file, for `init_weights`."""
    if config.warm_start.steps:
        require_demonstrations(config.env)
    torch.manual_seed(config.seed)
    actor = make_actor(config.policy, config.lora)
    try:
        _initial_weights(config, actor, log or (lambda record: None))
        actor.save_pretrained(directory)
    finally:
        actor.close()
    return directory / "model.safetensors"


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
    if config.warm_start.steps and not resume:
        require_demonstrations(config.env)
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


def _timed(fn: Callable[[int], tuple[list[Tree], int]], step: int
           ) -> tuple[tuple[list[Tree], int], float]:
    """`fn(step)` and its wall time, measured where it runs (a thread, in one-step-off)."""
    started = time.perf_counter()
    result = fn(step)
    return result, time.perf_counter() - started


def _steps(config: TrainConfig, learner: Learner, collector: Collector, state: dict[str, int],
           batch: list[Tree], resume: bool, log: Log) -> list[dict]:
    """Steps `state["step"]` up to `config.steps`, the token budget, or the
    `stop_after_flat_steps`-th step in a row that had nothing to learn from."""
    metrics_log = MetricsLog(config.out, state["step"] if resume else None)
    # Checkpoints from before trees.jsonl existed have no size: start the file afresh.
    trees_log = TreesLog(config.out, state.get("trees_bytes", 0) if resume else 0)
    estimator = ESTIMATORS[config.advantage]
    ahead = ThreadPoolExecutor(1) if config.weight_sync == "one-step-off" else None
    history = []
    flat_steps = 0  # steps in a row whose every advantage group was flat
    try:
        for step in range(state["step"], config.steps):
            if config.token_budget and state["generated"] - state["batch_generated"] >= \
                    config.token_budget:
                break
            started = time.perf_counter()
            advantages = estimator(batch)
            flat, groups = flat_groups(batch, advantages, config.advantage)
            flat_steps = flat_steps + 1 if flat == groups else 0
            if flat_steps:
                logger.warning(
                    "step %d: %d of %d advantage groups (100%%) have zero reward variance: "
                    "every episode in a group got the same reward, so every advantage is 0 and "
                    "this update has no learning signal (flat steps in a row: %d)",
                    step, flat, groups, flat_steps)
            next_batch = ahead.submit(_timed, collector.collect, step + 1) if ahead else None
            for _ in range(config.epochs):
                metrics = learner.step(batch, advantages)
            learn_seconds = time.perf_counter() - started
            trees_log.write(batch, advantages)
            if next_batch is not None:
                (new_batch, generated), rollout_seconds = next_batch.result()
                collector.sync(version=step + 1)
            else:
                collector.sync(version=step + 1)
                (new_batch, generated), rollout_seconds = _timed(collector.collect, step + 1)
            record = StepMetrics(
                step=step, reward=mean_reward(batch), generated=state["generated"],
                leaves=sum(len(t.kept) for t in batch), policy_version=batch[0].policy_version,
                zero_variance_groups=flat / groups if groups else 0.0, **metrics,
                learn_seconds=learn_seconds, rollout_seconds=rollout_seconds,
                step_seconds=time.perf_counter() - started,
            ).model_dump(exclude_none=True)
            metrics_log.write(record)
            history.append(record)
            log(record)
            batch = new_batch
            state = {"step": step + 1, "generated": state["generated"] + generated,
                     "batch_generated": generated, "trees_bytes": trees_log.size}
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                save_checkpoint(config.out / "checkpoints", step + 1, learner.model,
                                learner.optimizer, state, batch)
            if config.stop_after_flat_steps and flat_steps >= config.stop_after_flat_steps:
                raise FlatRewardError(
                    f"the reward never varied over {flat_steps} steps in a row (steps "
                    f"{step + 1 - flat_steps}-{step}, mean reward {record['reward']:.3g}): "
                    "every group's episodes got the same reward, so every advantage was 0 "
                    "and nothing was learned. Make it vary: more samples per group "
                    "(rollout.n, or rollout.m and k), a denser reward (e.g. env_kwargs "
                    "{shaped: true} on Maze), a warm start (warm_start.steps or "
                    "init_weights) or a higher temperature; or set stop_after_flat_steps: "
                    f"null to go on regardless. Metrics and checkpoints so far are in "
                    f"{config.out}")
    finally:
        if ahead is not None:
            ahead.shutdown(wait=False, cancel_futures=True)
    return history
