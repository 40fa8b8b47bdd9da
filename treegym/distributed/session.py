"""Finding Ray and joining a cluster, so every `--ray` path fails and cleans up alike.

Ray is optional (the `ray` extra): nothing imports it until a distributed run starts,
and then its absence is one clear line rather than a traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from ..errors import TreegymError


class DistributedError(TreegymError, RuntimeError):
    """A distributed run that can't start or can't finish: no Ray, no workers, no retries."""


def require_ray() -> ModuleType:
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DistributedError(
            "--ray needs Ray, which is not installed: pip install 'treegym[ray]'"
        ) from None
    return ray


@contextmanager
def ray_session(address: str, *, cpus_wanted: float = 0) -> Iterator[ModuleType]:
    """Ray, connected to `address` for the duration.

    `local` starts a private Ray on this machine with at least `cpus_wanted` CPUs (so
    asking for more workers than cores oversubscribes instead of waiting forever),
    `auto` joins the cluster `ray start` made here, `HOST:PORT` joins that head. A
    session someone else already opened (a notebook, a test) is used and left open.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, object] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        options |= {"num_cpus": max(os.cpu_count() or 1, int(cpus_wanted + 0.999)),
                    "include_dashboard": False}
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        hint = ("" if "RAY_AUTH_MODE" in os.environ else
                "; a cluster with token authentication needs RAY_AUTH_MODE=token here too")
        raise DistributedError(
            f"cannot reach a Ray cluster at {address!r}: {exc}{hint}"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()
