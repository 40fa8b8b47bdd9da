"""Shell commands of a sandbox worker: each in a pid namespace of its own, confined.

Stdlib only, imported by the worker script. A command is bash as pid 1 of a new pid
namespace, so killing that pid ends everything the command started. Before it becomes
bash it leaves the tree's layer store behind (a mount namespace of its own, the store
unmounted, a /proc of its own pid namespace), takes its rlimits, sets no_new_privs and
installs the seccomp filter; it never holds a capability the kernel would honour.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import time
from typing import Any

import _linux as L
import _seccomp
import _world

_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": _world.HOME,
        "USER": "agent", "LOGNAME": "agent", "LANG": "C.UTF-8", "TERM": "dumb",
        "SHELL": "/bin/bash", "TMPDIR": "/tmp"}
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "memory exhausted",
                 "Out of memory")
_PROCESS_HINTS = ("fork: retry", "fork: Resource temporarily unavailable",
                  "BlockingIOError: [Errno 11]", "Resource temporarily unavailable")


def run(cmd: str, timeout: float, limits: dict[str, Any], pidns: int,
        tree_processes: int) -> dict[str, Any]:
    """Run `cmd` under bash as pid 1 of a new pid namespace and collect its result.

    `pidns` is the branch's pid namespace, restored as the one later forks enter; killing
    the command's pid 1 on timeout ends its whole process tree. `tree_processes` is how
    many processes the tree holds now (RLIMIT_NPROC counts them all).
    """
    cap = limits["max_output_bytes"]
    start = time.monotonic()
    deadline = start + timeout
    nproc = min(tree_processes + limits["max_processes"],
                resource.getrlimit(resource.RLIMIT_NPROC)[1])
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    L.unshare(L.CLONE_NEWPID)  # only the next child enters the new pid namespace
    try:
        pid = os.fork()
        if pid == 0:
            _exec_command(cmd, out_w, err_w, nproc, limits)
    finally:
        L.setns(pidns, L.CLONE_NEWPID)  # later forks (branches) stay in the tree's
        os.close(out_w)
        os.close(err_w)
    streams = {out_r: bytearray(), err_r: bytearray()}
    seen = {out_r: 0, err_r: 0}
    timed_out = False
    open_fds = [out_r, err_r]
    for fd in open_fds:
        _grow_pipe(fd)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not timed_out:
            timed_out = True
            os.kill(pid, signal.SIGKILL)  # pid 1 of the command's pid ns: all of it dies
        ready, _, _ = select.select(open_fds, [], [], max(remaining, 0.05) if not timed_out
                                    else 1.0)
        for fd in ready:
            data = os.read(fd, 1 << 20)
            if not data:
                open_fds.remove(fd)
                os.close(fd)
                continue
            seen[fd] += len(data)
            room = cap - len(streams[fd])
            if room > 0:
                streams[fd] += data[:room]
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    stderr = streams[err_r].decode("utf-8", "replace")
    cpu_hit = usage.ru_utime + usage.ru_stime >= limits["cpu_seconds"] - 0.05
    return {
        "stdout": streams[out_r].decode("utf-8", "replace"), "stderr": stderr,
        "exit_code": code, "timed_out": timed_out, "truncated": max(seen.values()) > cap,
        "limit": None if timed_out else _command_limit(code, stderr, cpu_hit),
        "seconds": time.monotonic() - start,
    }


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl
        fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wakeups for big outputs
    except OSError:
        pass


def _command_limit(code: int, stderr: str, cpu_hit: bool) -> str | None:
    if code == 128 + signal.SIGXCPU or (code and cpu_hit):
        return "cpu"
    if code == 128 + signal.SIGXFSZ:
        return "file_size"
    if code != 0 and any(h in stderr for h in _MEMORY_HINTS):
        return "memory"
    if any(h in stderr for h in _PROCESS_HINTS):
        return "processes"
    return None


def _exec_command(cmd: str, out_w: int, err_w: int, nproc: int, limits: dict[str, Any]) -> None:
    """In pid 1 of the command's new pid namespace: confine, then become bash."""
    try:
        os.setsid()
        L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
        L.unshare(L.CLONE_NEWNS)
        L.mount("proc", "/proc", "proc", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        cpu = limits["cpu_seconds"]
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        L.prctl(L.PR_SET_NO_NEW_PRIVS, 1)
        _seccomp.install()
        os.chdir(_world.WORKDIR)
        # A trap keeps bash from exec-ing the last command: pid 1 of a pid namespace
        # ignores signals it has no handler for, the CPU limit's SIGXCPU included.
        os.execve("/bin/bash", ["bash", "-c", "trap : EXIT; " + cmd], _ENV)
    finally:
        os._exit(127)
