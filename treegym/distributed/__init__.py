"""Distributed tree rollouts on Ray, for when one machine is too small.

`ray_collect` is `collect` spread over `RolloutWorker` actors: each owns its policy and
its envs' sandboxes, finished trees stream back to the driver, which writes the JSONL
as `collect` does. Ray is optional (`pip install 'treegym[ray]'`); nothing here imports
it until a run starts. A trainer keeps a `WorkerPool` for its whole run and sends it
each new set of weights. See docs/scaling.md for how far this scales and where it stops.
"""

from ..policy.routing import RoutedPolicy, make_worker_policy, split_endpoints
from .driver import RayConfig, WorkerPool, plan_chunks, ray_collect
from .session import ClusterError, DistributedError, ray_session, require_ray
from .worker import RolloutJob, RolloutWorker

__all__ = [
    "ClusterError",
    "DistributedError",
    "RayConfig",
    "RolloutJob",
    "RolloutWorker",
    "RoutedPolicy",
    "WorkerPool",
    "make_worker_policy",
    "plan_chunks",
    "ray_collect",
    "ray_session",
    "require_ray",
    "split_endpoints",
]
