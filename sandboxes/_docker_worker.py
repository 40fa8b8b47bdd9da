"""The worker that runs inside each docker sandbox container; stdlib only.

The host starts it once per container with `docker exec -i` and then speaks framed JSON
over that exec's stdin/stdout, so a tool call costs one socket round trip instead of a
`docker exec` (~50 ms). It runs as root holding only SETUID, SETGID and KILL: agent code
(commands and the persistent interpreter) runs as the unprivileged agent user, which
therefore cannot signal, ptrace or starve the worker, so a `kill -9 -1` or a wedged
interpreter is reported and repaired instead of killing the sandbox.

The host sends this file's source on stdin to a one-line bootstrap (`BOOTSTRAP` in
docker.py), so the agent's `ps` shows a short command line. After that, frames are a
4-byte big-endian length and a JSON object, both ways.
"""

from __future__ import annotations

import ast
import base64
import builtins
import errno
import json
import linecache
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import BinaryIO

import _docker_disk  # these two shipped ahead of this file's source by _docker_boot.LOADER
import _files

CFG = json.loads(sys.argv[1])
UID: int = CFG["uid"]
WORKDIR: str = CFG["workdir"]
CAP: int = CFG["max_output_bytes"]
CPU: int = CFG["cpu_seconds"]
MEM: int = CFG["memory_mb"] << 20
MAX_FILE: int = CFG["max_file_mb"] << 20
FILES = _files.WorkDir(WORKDIR)
ENV = {
    "HOME": CFG["home"],
    "USER": CFG["user"],
    "LOGNAME": CFG["user"],
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PWD": WORKDIR,
    "PYTHONUNBUFFERED": "1",
}
# Output that a finished command's background jobs keep writing is collected this long.
GRACE = 0.1
# How long an interrupted interpreter gets to unwind before it is killed and replaced.
INTERRUPT_GRACE = 1.0
CGROUP_COUNTERS = {
    "memory": ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
    "processes": ("/sys/fs/cgroup/pids/pids.events", "max"),
}
SIGNAL_LIMITS = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size"}
# Ops that add to the agent's files; an over-cap branch refuses them ("disk" precedes a fork).
DISK_OPS = ("run", "python", "write", "disk")


def read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return bytes(buf)


def recv(source: int | BinaryIO) -> dict | None:
    """One frame from a pipe fd, or from the host's stream (buffered by the bootstrap)."""
    read = source.read if not isinstance(source, int) else lambda n: read_exact(source, n)
    head = read(4)
    if len(head) < 4:
        return None
    size = struct.unpack(">I", head)[0]
    body = read(size)
    return json.loads(body) if len(body) == size else None


def send(fd: int, obj: dict) -> None:
    data = json.dumps(obj).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


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


def demote(cpu_limit: bool) -> None:
    """Turn a freshly forked child into agent code: no privileges, the per-process caps."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")  # the container OOM killer takes agent processes before the worker
    resource.setrlimit(resource.RLIMIT_AS, (MEM, MEM))
    if cpu_limit:
        resource.setrlimit(resource.RLIMIT_CPU, (CPU, CPU + 1))
    os.setgroups([])
    os.setgid(UID)
    os.setuid(UID)


def tree_members(leader: int) -> set[int]:
    """Live (non-zombie) processes in `leader`'s process group or descended from it."""
    children: dict[int, list[int]] = {}
    alive, group = set(), {leader}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        pid, ppid, pgrp = int(entry), int(fields[1]), int(fields[2])
        children.setdefault(ppid, []).append(pid)
        if fields[0] not in ("Z", "X"):
            alive.add(pid)
        if pgrp == leader:
            group.add(pid)
    todo = list(group)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in group:
                group.add(child)
                todo.append(child)
    return group & alive


def kill_tree(leader: int) -> None:
    """SIGKILL a process group and everything descended from its leader, until none is left."""
    _docker_disk.kill_until_gone(lambda: tree_members(leader))


class Pump:
    """Collects a call's stdout and stderr, keeping at most CAP bytes of each."""

    def __init__(self, out_fd: int, err_fd: int) -> None:
        self.fds = {out_fd: bytearray(), err_fd: bytearray()}
        self.open = set(self.fds)
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
        room = CAP - len(buf)
        if room > 0:
            buf += chunk[:room]
        if len(chunk) > room:
            self.truncated = True

    def text(self, fd: int) -> str:
        return self.fds[fd].decode("utf-8", "replace")


def exit_limit(status: int) -> str | None:
    sig = -status if status < 0 else status - 128 if status > 128 else 0
    return SIGNAL_LIMITS.get(sig)


def op_run(req: dict) -> dict:
    before = counters()
    deadline = time.monotonic() + req["timeout"]
    proc = subprocess.Popen(
        ["bash", "-c", req["cmd"]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=WORKDIR,
        env=ENV,
        start_new_session=True,
        preexec_fn=lambda: demote(cpu_limit=True),
    )
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    pump = Pump(out_fd, err_fd)
    finished = pump.run(deadline, lambda: proc.poll() is not None)
    if not finished:
        kill_tree(proc.pid)
    status = proc.wait()
    limit = "timeout" if not finished else exit_limit(status) or counter_limit(before)
    if limit is not None:
        # Background jobs are left running after a normal call, but not after a limit hit:
        # a fork bomb's survivors would otherwise hold every pid the next call needs.
        kill_tree(proc.pid)
    result = {
        "stdout": pump.text(out_fd),
        "stderr": pump.text(err_fd),
        "exit_code": 128 - status if status < 0 else status,
        "timed_out": not finished,
        "truncated": pump.truncated,
        "limit": limit,
    }
    proc.stdout.close()
    proc.stderr.close()
    return result


def counter_limit(before: dict[str, int]) -> str | None:
    after = counters()
    for limit, value in after.items():
        if value > before.get(limit, value):
            return limit
    return None


class CpuLimit(BaseException):
    """Raised in the interpreter by SIGXCPU, so a CPU-bound cell stops but state survives."""


def repl(req_fd: int, rep_fd: int) -> None:
    """The persistent interpreter loop; runs as the agent in a child of the worker."""

    def on_xcpu(signum: int, frame: object) -> None:
        raise CpuLimit(f"CPU limit of {CPU} s per call reached")

    signal.signal(signal.SIGXCPU, on_xcpu)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ns: dict = {"__name__": "__main__", "__builtins__": builtins}
    cell = 0
    while True:
        req = recv(req_fd)
        if req is None:
            os._exit(0)
        send(rep_fd, {"started": True})
        cell += 1
        name = f"<cell {cell}>"
        code = req["code"]
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        used = sum(os.times()[:2])
        resource.setrlimit(resource.RLIMIT_CPU, (int(used) + CPU + 1, resource.RLIM_INFINITY))
        reply: dict = {"exit_code": 0, "limit": None}
        try:
            tree = ast.parse(code, name, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, name, "exec"), ns)
            if last is not None:
                value = eval(compile(last, name, "eval"), ns)
                if value is not None:
                    print(repr(value))
        except SystemExit as e:
            reply["exit_code"] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:  # noqa: BLE001 - the agent's error is reported, not raised
            reply["exit_code"] = 1
            if isinstance(e, MemoryError):
                reply["limit"] = "memory"
            elif isinstance(e, CpuLimit):
                reply["limit"] = "cpu"
            elif isinstance(e, KeyboardInterrupt):
                reply["limit"] = "timeout"
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        finally:
            resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - the agent may have replaced or closed it
                    pass
        send(rep_fd, reply)


class Interpreter:
    """The agent's persistent interpreter: a forked, demoted child running `repl`."""

    def __init__(self) -> None:
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                os.chdir(WORKDIR)
                demote(cpu_limit=False)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in map(int, os.listdir("/proc/self/fd")):
                    if fd not in (0, 1, 2, req_r, rep_w):
                        try:
                            os.close(fd)
                        except OSError:
                            pass  # the directory listing's own fd
                sys.stdin = open(os.devnull)  # not the host stream the worker buffered
                os.environ.clear()
                os.environ.update(ENV)
                sys.argv = [""]
                sys.path.insert(0, "")
                repl(req_r, rep_w)
            finally:
                os._exit(1)
        self.pid = pid
        for fd in (req_r, rep_w, out_w, err_w):
            os.close(fd)

    def kill(self) -> None:
        kill_tree(self.pid)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # already reaped by the caller, which wanted its exit status
        for fd in (self.req_w, self.rep_r, self.out_r, self.err_r):
            os.close(fd)


class Call:
    """One submission of code to the interpreter, and what has come back from it."""

    def __init__(self, code: str, deadline: float) -> None:
        self.started = False
        self.reply: dict | None = None
        self.lost = False
        self.pump = Pump(interp.out_r, interp.err_r)
        try:
            send(interp.req_w, {"code": code})
        except BrokenPipeError:
            self.lost = True
        self.timed_out = not self.pump.run(deadline, self.finished, interp.rep_r, grace=0)

    def finished(self) -> bool:
        while not self.done() and select.select([interp.rep_r], [], [], 0)[0]:
            message = recv(interp.rep_r)
            if message is None:
                self.lost = True
            elif message.get("started"):
                self.started = True
            else:
                self.reply = message
        return self.done()

    def done(self) -> bool:
        return self.lost or self.reply is not None

    def interrupt(self) -> None:
        """SIGINT keeps the interpreter's state if its code lets KeyboardInterrupt through."""
        os.kill(interp.pid, signal.SIGINT)
        if not self.pump.run(time.monotonic() + INTERRUPT_GRACE, self.finished, interp.rep_r, 0):
            self.lost = True


def op_python(req: dict) -> dict:
    before = counters()
    deadline = time.monotonic() + req["timeout"]
    notes = ""
    call = Call(req["code"], deadline)
    if call.lost and not call.started:
        # It died before this call (e.g. the agent's `kill -9 -1`): nothing ran, so run it
        # on a fresh interpreter.
        notes = restart_interpreter("it was killed between calls")
        call = Call(req["code"], deadline)
    if call.timed_out:
        call.interrupt()
    pump = call.pump
    stdout, stderr = pump.text(interp.out_r), notes + pump.text(interp.err_r)
    if call.reply is None:
        status = 0
        if not call.timed_out:
            _, raw = os.waitpid(interp.pid, 0)
            status = -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)
        why = "it did not stop when interrupted" if call.timed_out else f"it died ({status})"
        stderr += ("\n" if stderr and not stderr.endswith("\n") else "") + restart_interpreter(why)
        limit = "timeout" if call.timed_out else exit_limit(status) or counter_limit(before)
        return {
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": 137 if call.timed_out else 1,
            "timed_out": call.timed_out,
            "truncated": pump.truncated,
            "limit": limit,
        }
    return {
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": call.reply["exit_code"],
        "timed_out": call.timed_out,
        "truncated": pump.truncated,
        "limit": call.reply["limit"] or counter_limit(before),
    }


def restart_interpreter(why: str) -> str:
    global interp
    interp.kill()
    interp = Interpreter()
    return f"[treegym: the interpreter was restarted because {why}; its variables are lost]\n"


class AsAgent:
    """File operations run with the agent's effective ids, so they obey its permissions."""

    def __enter__(self) -> None:
        os.setegid(UID)
        os.seteuid(UID)

    def __exit__(self, *exc: object) -> None:
        os.seteuid(0)
        os.setegid(0)


def op_write(req: dict) -> dict:
    with AsAgent():
        FILES.write(req["path"], base64.b64decode(req["data"]))
    return {}


def op_read(req: dict) -> dict:
    with AsAgent():
        return {"data": base64.b64encode(FILES.read(req["path"], MAX_FILE)).decode()}


def op_listdir(req: dict) -> dict:
    with AsAgent():
        return {"names": FILES.listdir(req["path"])}


def op_disk(req: dict) -> dict:
    return {"bytes": disk.used, "files": disk.files}


def op_ping(req: dict) -> dict:
    return {"pid": os.getpid(), "interpreter": interp.pid}


OPS = {
    "run": op_run,
    "python": op_python,
    "write": op_write,
    "read": op_read,
    "listdir": op_listdir,
    "ping": op_ping,
    "disk": op_disk,
}


def main() -> None:
    global interp, disk
    os.setgroups([])
    os.umask(0o022)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG
    disk = _docker_disk.DiskCap(UID, CFG["disk_mb"], CFG["max_files"])
    interp = Interpreter()
    while True:
        req = recv(sys.stdin.buffer)
        if req is None:
            break
        try:
            since = _docker_disk.free()
            guarded = req["op"] in DISK_OPS
            resp = {} if guarded and disk.check(since) else OPS[req["op"]](req)
            if guarded and disk.check(None if req["op"] == "disk" else since):
                resp = {"error": disk.over, "limit": disk.limit}
        except OSError as e:
            limit = "file_size" if e.errno == errno.EFBIG else None
            resp = {"error": str(e), "errno": e.errno, "strerror": e.strerror, "limit": limit}
        except Exception as e:  # noqa: BLE001 - reported to the host, which raises it
            resp = {"error": f"{type(e).__name__}: {e}"}
        send(1, resp)
    interp.kill()


interp: Interpreter
disk: _docker_disk.DiskCap
if __name__ == "__main__":
    main()
