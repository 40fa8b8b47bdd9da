"""Fixtures for the sandbox tests. The local backend's modules opt in to `local_leak_check`."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator

import pytest

from treegym.sandboxes import SandboxError
from treegym.sandboxes._cgroup import existing
from treegym.sandboxes._procs import descendants
from treegym.sandboxes.local import LocalSandbox, worker_processes

_OUR_MOUNTS = ("tgstore", "lowerdir=/l/", "lowerdir=/skel", "/.tg")


def host_state() -> dict[str, list[object]]:
    """What a sandbox must never leave behind on the host.

    Other software (a Docker engine, say) may mount and make temp dirs meanwhile, so
    only what this backend could create is compared: its store tmpfs, its overlays,
    and temp dirs named after treegym.
    """
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line for line in f if any(m in line for m in _OUR_MOUNTS))
    tmp = sorted(n for n in os.listdir(tempfile.gettempdir()) if "treegym" in n)
    workers = worker_processes(ancestor=os.getpid())
    return {"workers": sorted(workers), "mounts": list(mounts), "tmp": list(tmp),
            "descendants": sorted(descendants(os.getpid())), "cgroups": existing()}


@functools.cache
def _local_unavailable() -> str | None:
    try:
        LocalSandbox().close()
    except SandboxError as e:
        return str(e)
    return None


@pytest.fixture
def local_leak_check() -> Iterator[None]:
    """Used by every local-backend test: skip without user namespaces, and fail if the
    test leaves workers, mounts or temp dirs behind."""
    reason = _local_unavailable()
    if reason:
        pytest.skip(f"local sandboxes need user namespaces here: {reason}")
    before = host_state()
    yield
    after = host_state()
    assert set(after["workers"]) <= set(before["workers"]), "sandbox processes leaked"
    assert set(after["descendants"]) <= set(before["descendants"]), "processes leaked"
    assert after["cgroups"] == before["cgroups"], "tree cgroups leaked"
    assert after["mounts"] == before["mounts"], "host mounts changed"
    assert set(after["tmp"]) <= set(before["tmp"]), "temp dirs leaked"


@pytest.fixture
def sb() -> Iterator[LocalSandbox]:
    box = LocalSandbox(timeout=10)
    yield box
    box.close()
