"""A pid namespace per branch, so no branch can see, signal or ptrace another branch's
processes, or open their roots through /proc/<pid>/root. Namespaces nest, so a parent
would see its children's: a parent that goes on after a fork does so in a new worker, in
a namespace beside theirs (_worker.py's op_continue).

A branch's worker cannot be pid 1 of its own namespace: when pid 1 dies the kernel kills
every process below it, nested namespaces included, so closing a parent branch would kill
all its descendants. So a fork makes the namespace and forks twice into it: first a
branch init (pid 1), then the child worker (pid 2). The init leaves the worker's root for
an empty one at once (a worker can open its init's root as /proc/1/root), waits for its
worker to exit, then reaps what falls to it (the worker's own child branches, which it
holds up) and leaves when nothing is left. It touches almost none of the memory it shares
with the worker, so it costs a fork's page tables and little else. Stdlib only.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

import _linux as L
import _reaper
from _procs import INIT_NAME
from _world import STORE

# The kernel nests pid namespaces 32 deep. A branch's commands take one level more, and a
# container may hide up to two above what its /proc shows; past this, a fork's child
# shares its parent's namespace (and sees its parent and its siblings there).
MAX_LEVEL = 32 - 1 - 2


def level() -> int:
    """This process's pid namespace depth, as far as its /proc can see (0 at the top)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("NSpid:"))
    return len(line.split()) - 2


def fork_branch(depth: int, own_ns: int) -> tuple[int, int, int]:
    """os.fork() for a new branch: (pid, the child's depth, and in the child an fd to pass
    to `await_init` before any agent code runs). The child is pid 2 of a new pid namespace
    below ours when the kernel allows one more, else it shares ours. In the parent, later
    forks (commands) go back to `own_ns`."""
    if depth + 1 > MAX_LEVEL:
        return os.fork(), depth, -1
    try:
        L.unshare(L.CLONE_NEWPID)
    except OSError:  # ENOSPC: the tree's count of pid namespaces is used up
        return os.fork(), depth, -1
    pid = -1
    try:
        ready_r, ready_w = os.pipe()
        if os.fork() == 0:
            os.close(ready_r)
            _be_init(ready_w)
        os.close(ready_w)
        pid = os.fork()
    finally:
        if pid != 0:
            L.setns(own_ns, L.CLONE_NEWPID)
    if pid:
        os.close(ready_r)
        return pid, depth + 1, -1
    return 0, depth + 1, ready_r


def await_init(ready: int) -> None:
    """In a new branch, before any agent code: wait until its init has left our root
    (which could be read through /proc/1/root). Waiting last lets the init's set-up
    overlap the branch's own."""
    if ready < 0:
        return
    if os.read(ready, 1) != b"g":
        raise OSError("the branch's init did not start")
    os.close(ready)


def _be_init(ready: int) -> None:
    try:
        os.closerange(0, ready)
        os.closerange(ready + 1, 1 << 16)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.setsid()  # out of the worker's process group, which closing it kills
        L.set_name(INIT_NAME)
        L.unshare(L.CLONE_NEWNS)
        L.mount("tginit", STORE, "tmpfs", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC, "size=4k")
        os.chdir(STORE)
        L.pivot_root(".", ".")
        L.umount(".")
        os.chdir("/")
        os.write(ready, b"g")
        os.close(ready)
        worker = _pidfd_of(2)
        _reaper.exec_reaper(worker, sys.argv)  # does the rest, holding no worker's pages
        select.select([worker], [], [])
        while True:
            os.wait()
    except ChildProcessError:  # the worker is gone, and everything that fell to us
        os._exit(0)
    finally:
        os._exit(1)


def _pidfd_of(pid: int) -> int:
    """A pidfd of `pid`, waiting for it to exist (the worker is forked after its init)."""
    for _ in range(5000):
        try:
            return os.pidfd_open(pid)
        except ProcessLookupError:
            time.sleep(0.001)
    raise ProcessLookupError(pid)
