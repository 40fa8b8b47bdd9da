"""The process table from /proc, and killing what agent code started; stdlib only.

Every worker (local, docker tree, docker commit) has to find what a call left running and
kill it, and the tests have to find what a test leaked. They all read /proc the same way
here, so a zombie, a vanished pid or a process named `a) b` is handled once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple

# The process name of branch inits (_nest.py), so counts of workers can leave them out.
INIT_NAME = "treegym-init"


class Proc(NamedTuple):
    pid: int
    ppid: int
    pgrp: int
    # The owner of the /proc/<pid> directory: the effective uid. (Its files belong to root
    # when the process is not dumpable, as one that dropped from root to the agent is.)
    uid: int
    alive: bool  # neither a zombie nor dead


def table() -> dict[int, Proc]:
    """Every process in this pid namespace now; one that exits mid-walk is left out."""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            uid = os.stat(f"/proc/{name}").st_uid
        except (OSError, IndexError):
            continue
        pid = int(name)
        procs[pid] = Proc(pid, int(fields[1]), int(fields[2]), uid, fields[0] not in (b"Z", b"X"))
    return procs


def count() -> int:
    """How many processes this pid namespace holds, without reading any of them: cheap
    enough to take before every call."""
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def _below(procs: dict[int, Proc], roots: Iterable[int], skip: Collection[int]) -> set[int]:
    kids: dict[int, list[int]] = {}
    for p in procs.values():
        kids.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in kids.get(todo.pop(), []):
            if child not in skip and child not in found:
                found.add(child)
                todo.append(child)
    return found


def descendants(root: int, skip: Collection[int] = ()) -> set[int]:
    """Live processes below `root`, minus the subtrees of `skip`: what a call started, or
    what a test left running."""
    procs = table()
    return {pid for pid in _below(procs, [root], skip) if procs[pid].alive}


def group(leader: int) -> set[int]:
    """Live processes in `leader`'s process group or descended from it: a command that
    called setsid is still found through its parent."""
    procs = table()
    members = {p.pid for p in procs.values() if p.pgrp == leader} | {leader}
    members |= _below(procs, members, ())
    return {pid for pid in members if pid in procs and procs[pid].alive}


def matching(marker: bytes, ancestor: int | None = None) -> list[int]:
    """Processes whose command line holds `marker`, only those below `ancestor` if given:
    other programs on the host may be running sandboxes of their own at the same time."""
    procs = table()
    pool = procs if ancestor is None else _below(procs, [ancestor], ())
    found = []
    for pid in pool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker in f.read():
                    found.append(pid)
        except OSError:
            continue
    return sorted(found)


def name(pid: int) -> str:
    """The process's name (comm), or "" once it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def pid_ns(pid: int) -> str:
    """The process's pid namespace ("pid:[inode]"), or "" once it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def lone_init(ns: str) -> int | None:
    """The branch init of pid namespace `ns` when it is the last process there."""
    members = [pid for pid in table() if pid_ns(pid) == ns]
    if len(members) == 1 and name(members[0]) == INIT_NAME:
        return members[0]
    return None


def owned_by(uid: int) -> set[int]:
    return {p.pid for p in table().values() if p.uid == uid}


def children() -> set[int]:
    """This process's direct children, from every thread, without scanning /proc: cheap
    enough to take before every call."""
    kids: set[int] = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                kids.update(int(pid) for pid in f.read().split())
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN, or a thread gone
        return descendants(os.getpid())
    return kids


def kill_until_gone(members: Callable[[], Iterable[int]], reap: bool = False) -> None:
    """SIGKILL `members()` again and again until it is empty: a fork bomb keeps making
    new ones while it is being killed. `reap` collects those that are our own children,
    since the code that started them can no longer wait for them."""
    for _ in range(200):
        pids = list(members())
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if reap:
            for pid in pids:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.002)
