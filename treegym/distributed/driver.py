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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..policy import Policy, SamplingParams
from ..records import Tree
from ..rollout import RolloutResult, RolloutStats, Sampler, finished_trees
from ..rollout.collect import append_tree
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
    cpus_per_worker: float = Field(1.0, ge=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_retries: int = Field(3, ge=0, description="Re-runs of a chunk after worker deaths.")
    start_timeout: float = Field(600.0, gt=0, description="Seconds for workers to start.")


def plan_chunks(tasks: int, done: set[tuple[int, int]], trees_per_task: int,
                size: int) -> list[tuple[int, ...]]:
    """The tasks that still miss a tree, in chunks of `size`, in task order."""
    todo = [t for t in range(tasks) if any((t, j) not in done for j in range(trees_per_task))]
    return [tuple(todo[i:i + size]) for i in range(0, len(todo), size)]


def _start_workers(ray: Any, job: RolloutJob, cfg: RayConfig) -> list[Any]:
    """The actors, each with its policy built; a worker that can't start is an error."""
    actor = ray.remote(RolloutWorker).options(
        num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker, max_restarts=0,
        max_task_retries=0,
    )
    workers = [actor.remote(job, rank) for rank in range(cfg.workers)]
    try:
        ray.get([w.pid.remote() for w in workers], timeout=cfg.start_timeout)
    except ray.exceptions.GetTimeoutError:
        _stop_workers(ray, workers)
        raise DistributedError(
            f"{cfg.workers} rollout workers did not start within {cfg.start_timeout:g}s; the "
            f"cluster has {ray.cluster_resources()}; ask for fewer workers or resources"
        ) from None
    except ray.exceptions.RayError as exc:
        _stop_workers(ray, workers)
        last = str(exc).strip().splitlines()[-1]
        raise DistributedError(f"a rollout worker failed to start: {last}") from None
    return workers


def _stop_workers(ray: Any, workers: Sequence[Any]) -> None:
    """Let each worker free its policy, then end the actors; their sandboxes go with them."""
    if not workers:
        return
    ray.wait([w.close.remote() for w in workers], num_returns=len(workers), timeout=30)
    for worker in workers:
        ray.kill(worker)


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
    require_ray()  # before touching `out`
    cfg = ray or RayConfig()
    job = RolloutJob(
        env_id=env_id, policy=policy, sampler=sampler, seed=seed,
        params=params or SamplingParams(), env_kwargs=dict(env_kwargs or {}),
        policy_name=policy_name or (policy if isinstance(policy, str) else None),
        max_branches=max_branches,
    )
    out_path = Path(out) if out is not None else None
    done_before = finished_trees(out_path) if out_path is not None and resume else []
    if out_path is not None and not resume:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("")
    written = {(t.task_index, t.tree_index) for t in done_before}
    chunks = deque(plan_chunks(tasks, written, sampler.trees_per_task, cfg.tasks_per_call))
    trees: list[Tree] = []
    stats = RolloutStats()

    def take(result: RolloutResult) -> None:
        for tree in result.trees:
            key = (tree.task_index, tree.tree_index)
            if key in written:
                continue
            written.add(key)
            if out_path is not None:
                append_tree(out_path, tree)
            trees.append(tree)
            stats.add_tree(tree)
            if on_tree is not None:
                on_tree(tree)
        stats.generated_tokens += result.stats.generated_tokens
        stats.prefilled_tokens += result.stats.prefilled_tokens
        stats.cached_tokens += result.stats.cached_tokens
        stats.gen_seconds += result.stats.gen_seconds

    with ray_session(cfg.address, cpus_wanted=cfg.workers * cfg.cpus_per_worker) as ray_mod:
        workers = _start_workers(ray_mod, job, cfg) if chunks else []
        start = time.perf_counter()
        try:
            _schedule(ray_mod, workers, chunks, cfg, take)
        finally:
            stats.wall_seconds = time.perf_counter() - start
            _stop_workers(ray_mod, workers)
    trees.sort(key=lambda t: (t.task_index, t.tree_index))
    return RolloutResult(trees=trees, stats=stats)


def _schedule(ray: Any, workers: list[Any], chunks: deque[tuple[int, ...]], cfg: RayConfig,
              take: Callable[[RolloutResult], None]) -> None:
    """Keep every live worker fed until all chunks are in; re-queue a dead worker's chunks."""
    live = dict(enumerate(workers))
    load: Counter[int] = Counter()
    tries: Counter[tuple[int, ...]] = Counter()
    running: dict[Any, tuple[int, tuple[int, ...]]] = {}  # ObjectRef -> (worker, chunk)
    while chunks or running:
        while chunks and any(load[w] < cfg.calls_in_flight for w in live):
            for w in live:
                if chunks and load[w] < cfg.calls_in_flight:
                    chunk = chunks.popleft()
                    running[live[w].rollout.remote(list(chunk))] = (w, chunk)
                    load[w] += 1
        if not running:
            raise DistributedError(
                f"every rollout worker died; {len(chunks)} chunks of tasks were not rolled out "
                "(the trees written so far are whole: rerun with --resume)"
            )
        [ref], _ = ray.wait(list(running), num_returns=1)
        w, chunk = running.pop(ref)
        load[w] -= 1
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if live.pop(w, None) is not None:
                logger.warning("rollout worker %d died (%s)", w, type(exc).__name__)
            tries[chunk] += 1
            if tries[chunk] > cfg.max_retries:
                raise DistributedError(
                    f"tasks {list(chunk)} lost {tries[chunk]} workers; not retrying them again"
                ) from None
            chunks.appendleft(chunk)
            continue
        except ray.exceptions.RayTaskError as exc:
            raise DistributedError(
                f"rolling out tasks {list(chunk)} failed on worker {w}: {exc.cause!r}"
            ) from None
        take(result)
