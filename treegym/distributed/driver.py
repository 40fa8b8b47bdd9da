"""`ray_collect`: `collect` spread over Ray actors, writing the same JSONL.

The driver hands out chunks of tasks, keeps at most `calls_in_flight` chunks queued on
each worker (backpressure: a slow worker isn't buried under work a faster one could
take), and writes every tree as its chunk comes back, fsynced, exactly as `collect`
does, so `--resume` works the same. A worker that dies has its unfinished chunks
handed to the others. Trees are keyed by (task, tree): one that arrives twice (a retry
of a chunk whose first result was already in, or a resumed file) is written once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..policy import Policy, SamplingParams
from ..records import Tree
from ..rollout import RolloutResult, Sampler
from ..rollout.sink import TreeSink
from .session import DistributedError, ray_session, require_ray
from .worker import RolloutJob, RolloutWorker

logger = logging.getLogger(__name__)


class RayConfig(BaseModel):
    """Where and how wide a distributed rollout runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field("local", description="local (start Ray here), auto, or HOST:PORT.")
    workers: int = Field(2, ge=1, description="RolloutWorker actors.")
    tasks_per_call: int = Field(1, ge=1, description="Tasks a worker rolls out together.")
    calls_in_flight: int = Field(2, ge=1, description="Chunks queued per worker at most.")
    cpus_per_worker: float = Field(1.0, ge=0, description="CPUs Ray reserves per worker.")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs Ray reserves per worker "
                                   "(a fraction shares one GPU).")
    max_retries: int = Field(3, ge=0, description="Re-runs of a chunk after worker deaths.")
    start_timeout: float = Field(600.0, gt=0, description="Seconds for workers to start.")


def plan_chunks(tasks: int, done: set[tuple[int, int]], trees_per_task: int,
                size: int) -> list[tuple[int, ...]]:
    """The tasks that still miss a tree, in chunks of `size`, in task order."""
    todo = [t for t in range(tasks) if any((t, j) not in done for j in range(trees_per_task))]
    return [tuple(todo[i:i + size]) for i in range(0, len(todo), size)]


class WorkerPool:
    """Rollout workers started once and fed batch after batch.

    `ray_collect` uses one for a single run; a trainer keeps one for all its steps and
    sends every new set of weights to each worker with `set_weights`. A worker that dies
    leaves the pool for good; its unfinished chunks go to the others.
    """

    def __init__(self, ray: Any, job: RolloutJob, cfg: RayConfig) -> None:
        self.ray, self.cfg = ray, cfg
        self.trees_per_task = job.sampler.trees_per_task
        actor = ray.remote(RolloutWorker).options(
            num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker, max_restarts=0,
            max_task_retries=0,
        )
        self.live = {rank: actor.remote(job, rank) for rank in range(cfg.workers)}
        try:
            ray.get([w.pid.remote() for w in self.live.values()], timeout=cfg.start_timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise DistributedError(
                f"{cfg.workers} rollout workers did not start within {cfg.start_timeout:g}s; "
                f"the cluster has {ray.cluster_resources()}; ask for fewer workers or resources"
            ) from None
        except ray.exceptions.RayError as exc:
            self.close()
            last = str(exc).strip().splitlines()[-1]
            raise DistributedError(f"a rollout worker failed to start: {last}") from None

    def set_weights(self, weights: dict[str, Any] | None, version: int) -> None:
        """Every live worker rolls out with `weights` from its next chunk on (None: the
        shared servers they route to already have them; only the version changes).

        The weights go into the object store once and each worker reads them from there
        (on another node, Ray copies them once per node, not once per worker).
        """
        ref = self.ray.put(weights) if weights is not None else None
        calls = {rank: w.set_weights.remote(ref, version) for rank, w in self.live.items()}
        for rank, call in calls.items():
            try:
                self.ray.get(call)
            except self.ray.exceptions.RayActorError:
                self._lost(rank, "while taking new weights")
            except self.ray.exceptions.RayTaskError as exc:
                raise DistributedError(f"worker {rank} could not take new weights: "
                                       f"{exc.cause}") from None
        if not self.live:
            raise DistributedError("every rollout worker died; nothing left to take new weights")

    def collect(self, tasks: int, *, seed: int, params: SamplingParams,
                done: set[tuple[int, int]] | None = None,
                take: Callable[[RolloutResult], None]) -> None:
        """Roll out every tree of `tasks` tasks not in `done`; hand each chunk's result to
        `take` as it arrives, exactly once per chunk."""
        cfg = self.cfg
        chunks = deque(plan_chunks(tasks, done or set(), self.trees_per_task,
                                   cfg.tasks_per_call))
        load: Counter[int] = Counter()
        tries: Counter[tuple[int, ...]] = Counter()
        running: dict[Any, tuple[int, tuple[int, ...]]] = {}  # ObjectRef -> (worker, chunk)
        while chunks or running:
            for w, worker in list(self.live.items()):
                while chunks and load[w] < cfg.calls_in_flight:
                    chunk = chunks.popleft()
                    running[worker.rollout.remote(list(chunk), seed, params)] = (w, chunk)
                    load[w] += 1
            if not running:
                raise DistributedError(
                    f"every rollout worker died; {len(chunks)} chunks of tasks were not rolled "
                    "out (the trees written so far are whole: rerun with --resume)"
                )
            [ref], _ = self.ray.wait(list(running), num_returns=1)
            w, chunk = running.pop(ref)
            load[w] -= 1
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayActorError:
                self._lost(w, f"rolling out tasks {list(chunk)}")
                tries[chunk] += 1
                if tries[chunk] > cfg.max_retries:
                    raise DistributedError(
                        f"tasks {list(chunk)} lost {tries[chunk]} workers; not retrying them again"
                    ) from None
                chunks.appendleft(chunk)
                continue
            except self.ray.exceptions.RayTaskError as exc:
                raise DistributedError(
                    f"rolling out tasks {list(chunk)} failed on worker {w}: {exc.cause!r}"
                ) from None
            take(result)

    def _lost(self, rank: int, doing: str) -> None:
        if self.live.pop(rank, None) is not None:
            logger.warning("rollout worker %d died %s", rank, doing)

    def close(self) -> None:
        """Let each worker free its policy, then end the actors; their sandboxes go with them."""
        workers = list(self.live.values())
        self.live = {}
        if workers:
            self.ray.wait([w.close.remote() for w in workers], num_returns=len(workers),
                          timeout=30)
        for worker in workers:
            self.ray.kill(worker)


def ray_collect(
    env_id: str,
    policy: str | Callable[[], Policy],
    sampler: Sampler,
    tasks: int,
    *,
    ray: RayConfig | None = None,
    seed: int = 0,
    params: SamplingParams | None = None,
    env_kwargs: dict[str, Any] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    policy_name: str | None = None,
    max_branches: int = 32,
    on_tree: Callable[[Tree], None] | None = None,
) -> RolloutResult:
    """Roll out `tasks` tasks on Ray workers; the same trees `collect` gives in-process.

    `policy` is built inside each worker: a SPEC, comma-separated `openai:` endpoints
    shared by all workers, or a function. `stats.wall_seconds` starts once every worker
    has its policy loaded, as `collect`'s starts after the policy is made.
    """
    require_ray()
    cfg = ray or RayConfig()
    job = RolloutJob(
        env_id=env_id, policy=policy, sampler=sampler, env_kwargs=dict(env_kwargs or {}),
        policy_name=policy_name or (policy if isinstance(policy, str) else None),
        max_branches=max_branches,
    )
    sink = TreeSink(out, resume=resume, on_tree=on_tree)
    if not plan_chunks(tasks, sink.written, sampler.trees_per_task, 1):
        return sink.result()
    with ray_session(cfg.address, cpus_wanted=cfg.workers * cfg.cpus_per_worker) as ray_mod:
        sink.begin()  # only once the cluster let us in
        pool = WorkerPool(ray_mod, job, cfg)
        start = time.perf_counter()
        try:
            pool.collect(tasks, seed=seed, params=params or SamplingParams(),
                         done=set(sink.written), take=sink.take)
        finally:
            sink.stats.wall_seconds = time.perf_counter() - start
            pool.close()
    return sink.result()
