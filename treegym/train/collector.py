"""Where a trainer's batches come from: this process, or rollout workers on Ray.

Both give the same trees for the same weights, because each batch's seeds depend only on
the step and each branch's seed on its place in its tree. So `ray:` in the config moves
rollouts to other processes and machines without changing what the learner sees.

A collector rolls out with the weights of its last `sync`. With Ray those weights are
the actor's `weights()`, put once in Ray's object store and read by every worker; with
shared `openai:` servers the driver sends them to each server once instead.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Protocol

from ..policy import SamplingParams
from ..records import Tree
from .actor import Actor
from .config import TrainConfig

if TYPE_CHECKING:
    pass


class Collector(Protocol):
    def sync(self, version: int) -> None:
        """Roll out with the actor's current weights, which saw `version` optimizer steps."""

    def collect(self, step: int) -> tuple[list[Tree], int]:
        """Batch `step` and the tokens generated for it."""

    def close(self) -> None: ...


SEEDS_PER_BATCH = 10_000  # batch s resets from (s + 1)·this: seeds below it are eval's
SEEDS_PER_RUN = 1_000_003  # a run's `seed` moves all its batches by this much


def batch_seed(config: TrainConfig, step: int) -> int:
    """Reset seeds of batch `step`'s tasks start here: fresh tasks every step."""
    return config.seed * SEEDS_PER_RUN + (step + 1) * SEEDS_PER_BATCH


def batch_params(config: TrainConfig, step: int) -> SamplingParams:
    return SamplingParams(temperature=config.temperature, max_tokens=config.max_new_tokens,
                          seed=config.seed * SEEDS_PER_RUN + step)


class LocalCollector:
    """Rolls out in this process with the actor's own policy."""

    def __init__(self, config: TrainConfig, actor: Actor) -> None:
        self.config, self.actor = config, actor
        self.version: int | None = None

    def sync(self, version: int) -> None:
        self.actor.sync()
        self.version = version

    def collect(self, step: int) -> tuple[list[Tree], int]:
        from ..rollout import collect

        config = self.config
        result = collect(config.env, self.actor.policy, config.rollout, config.tasks_per_step,
                         seed=batch_seed(config, step), params=batch_params(config, step),
                         env_kwargs=config.env_kwargs, policy_name=config.policy,
                         policy_version=self.version)
        return result.trees, result.stats.generated_tokens

    def close(self) -> None:
        """The actor belongs to the trainer, which closes it."""


class RayCollector:
    """Rolls out on `config.ray`'s workers, each with its own copy of `config.policy`."""

    def __init__(self, config: TrainConfig, actor: Actor) -> None:
        from ..distributed import RolloutJob, WorkerPool, ray_session

        assert config.ray is not None
        self.config, self.actor = config, actor
        job = RolloutJob(env_id=config.env, policy=config.policy, sampler=config.rollout,
                         env_kwargs=config.env_kwargs, policy_name=config.policy)
        self._stack = ExitStack()
        try:
            ray = self._stack.enter_context(ray_session(
                config.ray.address,
                cpus_wanted=config.ray.workers * config.ray.cpus_per_worker,
            ))
            self.pool = WorkerPool(ray, job, config.ray)
            self._stack.callback(self.pool.close)
        except BaseException:
            self._stack.close()
            raise

    def sync(self, version: int) -> None:
        if self.actor.policy.backend in ("openai", "routed"):  # servers every worker shares
            self.actor.sync()
            self.pool.set_weights(None, version)
            return
        weights = {name: t.detach().to("cpu") for name, t in self.actor.weights()}
        self.pool.set_weights(weights, version)

    def collect(self, step: int) -> tuple[list[Tree], int]:
        from ..rollout.sink import TreeSink

        config = self.config
        sink = TreeSink()
        self.pool.collect(config.tasks_per_step, seed=batch_seed(config, step),
                          params=batch_params(config, step), take=sink.take)
        result = sink.result()
        return result.trees, result.stats.generated_tokens

    def close(self) -> None:
        self._stack.close()


def make_collector(config: TrainConfig, actor: Actor) -> Collector:
    return RayCollector(config, actor) if config.ray is not None else LocalCollector(config,
                                                                                      actor)
