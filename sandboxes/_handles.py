"""The host's handles on local sandbox processes: a tree, a worker, and finding them.

Kept apart from `LocalSandbox` so that finalizers hold these small objects, never the
sandbox itself, and so that leak checks (`worker_processes`) need no sandbox at all.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from . import _procs
from ._cgroup import TreeCgroup

WORKER = Path(__file__).with_name("_worker.py")
"""Processes running this script are sandbox workers; leak checks look for it."""
_PIDFD_SIGNAL_PROCESS_GROUP = 4


class _Tree:
    """The process that holds one tree of sandboxes; `kill` takes the whole tree down.

    `stop` is backend-specific: for a local tree it closes the bootstrap's lifeline and
    reaps it, for a tree inside a container it also removes the container.
    """

    def __init__(self, stop: Callable[[], None], cgroup: TreeCgroup | None = None) -> None:
        self._stop: Callable[[], None] | None = stop
        self.cgroup = cgroup
        self.members = 0
        self.lock = threading.Lock()
        self.warned_depth = False  # a fork past the kernel's pid-namespace nesting

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills() if self.cgroup is not None else 0

    def join(self) -> None:
        with self.lock:
            self.members += 1

    def leave(self) -> None:
        with self.lock:
            self.members -= 1
            last = self.members == 0
        if last:
            self.kill()

    def kill(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


def _stop_bootstrap(proc: subprocess.Popen[bytes], lifeline: int,
                    cgroup: TreeCgroup | None) -> None:
    """EOF on the lifeline makes the bootstrap kill the tree's init and reap it."""
    os.close(lifeline)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if cgroup is not None:
        cgroup.remove()


class _Worker:
    """What is needed to stop one worker; kept apart so finalizers never hold the sandbox."""

    def __init__(self, tree: _Tree, sock: socket.socket, pid: int) -> None:
        self.tree = tree
        self.sock = sock
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.pidns = _procs.pid_ns(pid)
        self.stopped = False
        self.oom_kills = tree.oom_kills()  # so a later kill can be pinned on this branch
        tree.join()

    def stop(self, holds_branches: bool = False) -> None:
        """Kill the worker and its process group; `holds_branches`: it has just forked, so
        its init stays for the new branches, and waiting for it is pointless."""
        if self.stopped:
            return
        self.stopped = True
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL, None,
                                     _PIDFD_SIGNAL_PROCESS_GROUP)
        except OSError:  # kernels before 6.9: the worker alone
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        select.select([self.pidfd], [], [], 2.0)
        os.close(self.pidfd)
        self.sock.close()
        if not holds_branches:
            self._await_init()
        self.tree.leave()

    def _await_init(self) -> None:
        """Wait for the branch's init (_nest.py) to follow its worker out, so a closed
        branch leaves no process; one that still holds child branches stays for them."""
        init = _procs.lone_init(self.pidns) if self.pidns else None
        if init is None:
            return
        try:
            fd = os.pidfd_open(init)
        except ProcessLookupError:
            return
        select.select([fd], [], [], 2.0)
        os.close(fd)


def worker_processes(ancestor: int | None = None, inits: bool = True) -> list[int]:
    """Pids of live sandbox processes (without `inits`, only workers, not their branches'
    inits), for leak checks in tests and benches; with `ancestor`, only those descended
    from that pid."""
    pids = _procs.matching(str(WORKER).encode(), ancestor)
    return pids if inits else [pid for pid in pids if _procs.name(pid) != _procs.INIT_NAME]
