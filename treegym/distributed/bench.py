"""`treegym bench rollout --ray`: leaves per second with one worker and with several.

Both runs roll out the same tasks with the same seeds on one Ray session, so the trees
must come out the same (checked by content hash) and only the worker count differs.
Worker start-up (loading the policy) is left out of the timing, as model loading is
left out of the in-process figures.
"""

from __future__ import annotations

import os
from typing import Any

from ..policy import SamplingParams
from ..progress import Progress, counter, silent
from ..rollout import TreeSampler
from .digest import tree_digest
from .driver import RayConfig, ray_collect
from .session import ray_session


def ray_figures(env_id: str, *, spec: str = "tiny", m: int = 2, n: int = 2, l: int = 1,  # noqa: E741
                tasks: int = 4, max_tokens: int = 32, seed: int = 0,
                env_kwargs: dict[str, Any] | None = None, address: str = "local",
                workers: int = 2, progress: Progress = silent) -> dict[str, Any]:
    """Tree rollouts on 1 and on `workers` Ray workers, side by side."""
    counts = sorted({1, workers})
    sampler = TreeSampler(m=m, n=n, l=l, k=None)
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed)
    with ray_session(address, cpus_wanted=max(counts)) as ray:
        cpus = ray.cluster_resources().get("CPU", 0)
        runs = [
            ray_collect(env_id, spec, sampler, tasks, seed=seed, params=params,
                        env_kwargs=env_kwargs, ray=RayConfig(address=address, workers=count),
                        on_tree=counter(progress, tasks * sampler.trees_per_task,
                                        f"trees on {count} Ray worker(s)"))
            for count in counts
        ]
    digests = {tuple(tree_digest(t) for t in run.trees) for run in runs}
    return {
        "workers": counts,
        "leaves_per_s": [round(run.stats.leaves / run.stats.wall_seconds, 3) for run in runs],
        "ray_wall_s": [round(run.stats.wall_seconds, 3) for run in runs],
        "ray_leaves": runs[0].stats.leaves,
        "ray_same_trees": len(digests) == 1,
        "ray_cluster_cpus": cpus,
        "host_cpus": os.cpu_count(),
    }
