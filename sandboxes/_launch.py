"""Where a tree's first worker runs: the one thing the local and docker-tree backends do
differently. Everything after the worker's hello (the protocol, forks, limits, death) is
`LocalSandbox`'s, so both backends get it from one place.

A `Launcher` starts a tree and hands back its first branch's channel plus the tree's
`TreeProfile`, what every branch of it reports. `Adopt` is the launcher of a fork: the
tree already runs, and the new branch's channel came back from the parent's `fork` op,
so a fork goes through the same constructor as a root instead of being pieced together.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
from typing import Any, NamedTuple, Protocol

from ._cgroup import TreeCgroup
from ._files import HOME
from ._handles import WORKER, _stop_bootstrap, _Tree
from .base import SandboxError, SandboxLimits

FORK_METHODS = ("overlayfs", "copy")
# malloc asks for transparent huge pages (glibc >= 2.35; older ones ignore it), so a fork
# copies one page-table entry per 2 MiB of a big array instead of 512. Measured with
# `treegym bench sandbox --no-docker --repeats 100`, 5 runs each way, alternating, on a
# 2-CPU VM: a 64 MiB interpreter's fork p50 6.17-7.15 ms without, 4.10-4.75 ms with, at
# 2.21-2.23 vs 2.24-2.35 MiB PSS per fork.
WORKER_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


class TreeSpec(NamedTuple):
    """What a new tree is asked to be; the launcher maps it onto its own mechanisms
    (a cgroup on this host, the container's cgroups in docker)."""

    limits: SandboxLimits
    fork_method: str
    disk_mb: int
    squash_every: int
    max_tree_processes: int
    tree_memory_mb: int
    tree_cpus: float | None

    def worker_config(self, sandbox_uid: int | None) -> dict[str, Any]:
        """What `_worker.py` is told at start, wherever it runs (here or in a container)."""
        if self.fork_method not in FORK_METHODS:
            raise SandboxError(f"fork_method must be one of {FORK_METHODS}, not "
                               f"{self.fork_method!r}")
        return {
            "method": self.fork_method, "disk_mb": self.disk_mb,
            "squash_at": self.squash_every, "sandbox_uid": sandbox_uid,
            "network": self.limits.network,
            "limits": {**self.limits.model_dump(), "max_tree_processes": self.max_tree_processes},
        }


class TreeProfile(NamedTuple):
    """What every branch of one tree says about itself in `capabilities`; forks share it."""

    backend: str  # "local" or "docker"
    walls: list[str]  # isolation outside the worker's namespaces (the container's)
    tree_isolation: list[str]  # what bounds the tree as a whole (cgroups, its own uid)
    tree_cap: str | None  # what caps the tree's memory, None where nothing can
    container_id: str | None = None


class Started(NamedTuple):
    """A running tree's branch, not yet greeted: its channel and what it belongs to."""

    tree: _Tree
    sock: socket.socket
    profile: TreeProfile
    new_tree: bool = True  # a root: if its worker never greets, the tree goes down too


class Launcher(Protocol):
    def start(self, spec: TreeSpec) -> Started:
        """Start the branch's worker; on failure leave nothing running and raise."""
        ...


class HostLauncher:
    """A tree on this machine: the worker bootstraps its namespaces from a subprocess.

    `sandbox_uid` is the host uid the tree runs as when this process is root (None: one of
    its own per tree, so one tree's per-uid kernel quotas are not another's); `python`
    is the interpreter, which must live under /usr to be visible inside.
    """

    def __init__(self, sandbox_uid: int | None = None,
                 python: str = "/usr/bin/python3") -> None:
        if not python.startswith("/usr/") or not os.access(python, os.X_OK):
            raise SandboxError(f"python={python!r}: the worker's interpreter must be an "
                               "executable under /usr, the only host tree visible inside")
        self.sandbox_uid, self.python = sandbox_uid, python

    def start(self, spec: TreeSpec) -> Started:
        config = spec.worker_config(self.sandbox_uid)
        host_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        host_end.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        life_r, life_w = os.pipe()
        config |= {"chan_fd": worker_end.fileno(), "lifeline_fd": life_r}
        try:
            proc = subprocess.Popen(
                [self.python, "-I", "-S", str(WORKER), json.dumps(config)],
                pass_fds=(worker_end.fileno(), life_r), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", "HOME": HOME, "LANG": "C.UTF-8", **WORKER_ENV},
                start_new_session=True,
            )
        finally:
            worker_end.close()
            os.close(life_r)
        cgroup = TreeCgroup.create(spec.tree_memory_mb, spec.max_tree_processes,
                                   spec.tree_cpus)
        tree = _Tree(functools.partial(_stop_bootstrap, proc, life_w, cgroup), cgroup)
        try:
            if cgroup is not None:
                cgroup.add(proc.pid)  # before the go byte: the bootstrap has not forked yet
            os.write(life_w, b"g")
        except BaseException:
            host_end.close()
            tree.kill()
            raise
        isolation = (["memory-cgroup", "pids-cgroup"] if cgroup else []) + (
            ["cpu-cgroup"] if cgroup and cgroup.cpu else []) + (
            ["uid-per-tree"] if os.geteuid() == 0 and self.sandbox_uid is None else [])
        profile = TreeProfile("local", [], isolation,
                              "a memory cgroup for the tree" if cgroup else None)
        return Started(tree, host_end, profile)


class Adopt:
    """The launcher of a fork: its worker already runs, forked by its parent's."""

    def __init__(self, tree: _Tree, sock: socket.socket, profile: TreeProfile) -> None:
        self.started = Started(tree, sock, profile, new_tree=False)

    def start(self, spec: TreeSpec) -> Started:
        return self.started
