"""What the commit-backend worker needs to run agent code: who the agent is, how it reads
the frames (_wire.py) it shares with its interpreter and the host, how a call's output is
captured, and how a limit hit is recognised; stdlib only, shipped into the container by
_docker_boot.LOADER."""

from __future__ import annotations

import os
import resource
import select
import signal
import time
from collections.abc import Callable
from typing import BinaryIO

import _procs
import _wire

# Output that a finished command's background jobs keep writing is collected this long.
GRACE = 0.1
CGROUP_COUNTERS = {
    "memory": ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
    "processes": ("/sys/fs/cgroup/pids/pids.events", "max"),
}
SIGNAL_LIMITS = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size"}


class Agent:
    """The unprivileged identity agent code runs as, and its per-process caps, from the
    host's config."""

    def __init__(self, cfg: dict) -> None:
        self.uid: int = cfg["uid"]
        self.workdir: str = cfg["workdir"]
        self.cap: int = cfg["max_output_bytes"]
        self.cpu: int = cfg["cpu_seconds"]
        self.memory: int = cfg["memory_mb"] << 20
        self.max_file: int = cfg["max_file_mb"] << 20
        self.env = {
            "HOME": cfg["home"],
            "USER": cfg["user"],
            "LOGNAME": cfg["user"],
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PWD": self.workdir,
            "PYTHONUNBUFFERED": "1",
        }

    def demote(self, cpu_limit: bool) -> None:
        """Turn a freshly forked child into agent code: no privileges, the per-process caps."""
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # the container OOM killer takes agent processes before the worker
        resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
        if cpu_limit:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu, self.cpu + 1))
        os.setgroups([])
        os.setgid(self.uid)
        os.setuid(self.uid)


def reader(source: int | BinaryIO, wait: float | None = None) -> Callable[[int], bytes]:
    """`exact(n)` over a pipe fd, or over the host's stream (buffered by the bootstrap),
    for `_wire.unpack`; WireClosed at the end of the stream. With `wait`, a pipe that has
    nothing for that long mid-message is a WireError: the interpreter writes each reply
    in one atomic write, so only agent code leaves a message half-written."""

    def exact(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            want = n - len(buf)
            if wait is not None and not select.select([source], [], [], wait)[0]:
                raise _wire.WireError("a message was left half-written")
            chunk = os.read(source, want) if isinstance(source, int) else source.read(want)
            if not chunk:
                raise _wire.WireClosed("the stream ended")
            buf += chunk
        return bytes(buf)

    return exact


def recv(exact: Callable[[int], bytes],
         bounds: _wire.Bounds = _wire.TRUSTED) -> tuple[dict, bytes] | None:
    """One message, or None where the stream ended; WireError where it broke `bounds`."""
    try:
        return _wire.unpack(exact, bounds)
    except _wire.WireClosed:
        return None


def kill_tree(leader: int) -> None:
    """SIGKILL a process group and everything descended from its leader, until none is left."""
    _procs.kill_until_gone(lambda: _procs.group(leader))


class Pump:
    """Collects a call's stdout and stderr, keeping at most `cap` bytes of each."""

    def __init__(self, out_fd: int, err_fd: int, cap: int) -> None:
        self.fds = {out_fd: bytearray(), err_fd: bytearray()}
        self.open = set(self.fds)
        self.cap = cap
        self.truncated = False

    def run(
        self,
        deadline: float,
        finished: Callable[[], bool],
        ctl: int | None = None,
        grace: float = GRACE,
    ) -> bool:
        """Read until `finished()` (then `grace` for stragglers) or the deadline; True if done.

        `ctl` is an extra fd whose readability means "check finished() now"; without one,
        `finished()` is polled.
        """
        done_at = None
        while True:
            now = time.monotonic()
            if done_at is None and finished():
                done_at = now
            if done_at is None and now >= deadline:
                return False
            if done_at is not None and (not self.open or now >= done_at + grace):
                self.drain()
                return True
            until = deadline if done_at is None else done_at + grace
            watch = list(self.open)
            if done_at is None and ctl is not None:
                watch.append(ctl)
            wait = until - now if ctl is not None or done_at is not None else 0.05
            wait = max(0.0, min(wait, until - now))
            if not watch:
                time.sleep(min(wait, 0.01))
                continue
            for fd in select.select(watch, [], [], wait)[0]:
                if fd != ctl:
                    self.read(fd)

    def drain(self) -> None:
        """Take what is already in the pipes without waiting for more."""
        for _ in range(64):
            ready = select.select(list(self.open), [], [], 0)[0] if self.open else []
            if not ready:
                return
            for fd in ready:
                self.read(fd)

    def read(self, fd: int) -> None:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            self.open.discard(fd)
            return
        buf = self.fds[fd]
        room = self.cap - len(buf)
        if room > 0:
            buf += chunk[:room]
        if len(chunk) > room:
            self.truncated = True

    def text(self, fd: int) -> str:
        return self.fds[fd].decode("utf-8", "replace")


def counters() -> dict[str, int]:
    """Cgroup event counters; a rise during a call means that call hit the container limit."""
    out = {}
    for limit, (path, key) in CGROUP_COUNTERS.items():
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        out[limit] = int(value)
        except OSError:
            pass
    return out


def counter_limit(before: dict[str, int]) -> str | None:
    for limit, value in counters().items():
        if value > before.get(limit, value):
            return limit
    return None


def exit_limit(status: int) -> str | None:
    sig = -status if status < 0 else status - 128 if status > 128 else 0
    return SIGNAL_LIMITS.get(sig)
