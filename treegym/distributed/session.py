"""Finding Ray and joining a cluster, so every `--ray` path fails and cleans up alike.

Ray is optional (the `ray` extra): nothing imports it until a distributed run starts,
and then its absence is one clear line rather than a traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import ModuleType

from ..errors import ClusterError, DistributedError
from .auth import HOW_TO_PASS, token_auth


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
    `auto` joins the cluster `ray start` made here, `HOST:PORT` joins that head, sending
    Ray's auth token when one is found (`auth`). A session someone else already opened
    (a notebook, a test) is used and left open.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, object] = {"log_to_driver": False, "logging_level": logging.WARNING}
    with ExitStack() as stack:
        if address == "local":
            options |= {"num_cpus": max(os.cpu_count() or 1, int(cpus_wanted + 0.999)),
                        "include_dashboard": False}
            token = None
        else:
            token = stack.enter_context(token_auth(ray, address))
        stack.enter_context(_joined(ray, address, options, token))
        yield ray


@contextmanager
def _joined(ray: ModuleType, address: str, options: dict[str, object],
            token: str | None) -> Iterator[None]:
    """`ray.init` for the duration, its failures as one line that says what to try."""
    refused = getattr(ray.exceptions, "AuthenticationError", ())
    try:
        ray.init(address=address, **options)
    except refused:
        raise ClusterError(f"the Ray cluster at {address!r} needs a token: {HOW_TO_PASS}",
                           ) from None
    except (ConnectionError, ValueError, RuntimeError) as exc:
        if address == "local":
            raise DistributedError(f"cannot start a local Ray: {exc}") from None
        sent = (f"the token from {token} was sent; check it is this cluster's" if token else
                f"no token was sent; if the cluster uses token authentication, {HOW_TO_PASS}")
        raise ClusterError(f"cannot join a Ray cluster at {address!r}: {exc}; {sent}") from None
    try:
        yield
    finally:
        ray.shutdown()
