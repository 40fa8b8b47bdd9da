"""The worker that runs inside each docker sandbox container; stdlib only.

The host starts it once per container with `docker exec -i` and then speaks framed JSON
over that exec's stdin/stdout, so a tool call costs one socket round trip instead of a
`docker exec` (~50 ms). It runs as root holding only SETUID, SETGID and KILL: agent code
(commands and the persistent interpreter) runs as the unprivileged agent user, which
therefore cannot signal, ptrace or starve the worker, so a `kill -9 -1` or a wedged
interpreter is reported and repaired instead of killing the sandbox.

The host sends this file's source on stdin to a one-line bootstrap (`BOOTSTRAP` in
_docker_boot.py), after the modules it imports, so the agent's `ps` shows a short command
line. After that, both ways speak _wire.py's frames (a JSON header and a raw blob).
The interpreter is _docker_python.py; the disk cap _docker_disk.py.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

# Shipped ahead of this file's source by _docker_boot.LOADER.
import _docker_disk
import _files
import _wire
from _docker_agent import Agent, Pump, counter_limit, counters, exit_limit, kill_tree, reader, recv
from _docker_python import Python

# Ops that add to the agent's files; an over-cap branch refuses them ("disk" precedes a fork).
DISK_OPS = ("run", "python", "write", "disk")


class Worker:
    """The ops the host calls, each on behalf of one agent in one container."""

    def __init__(self, cfg: dict) -> None:
        self.agent = Agent(cfg)
        self.files = _files.WorkDir(self.agent.workdir)
        self.disk = _docker_disk.DiskCap(self.agent.uid, cfg["disk_mb"], cfg["max_files"])
        self.python = Python(self.agent)
        self.ops: dict[str, Callable[[dict, bytes], tuple[dict, bytes]]] = {
            "run": self.op_run, "python": self.op_python, "write": self.op_write,
            "read": self.op_read, "listdir": self.op_listdir, "ping": self.op_ping,
            "disk": self.op_disk}

    def op_run(self, req: dict, blob: bytes) -> tuple[dict, bytes]:
        before = counters()
        deadline = time.monotonic() + req["timeout"]
        proc = subprocess.Popen(
            ["bash", "-c", req["cmd"]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.agent.workdir,
            env=self.agent.env,
            start_new_session=True,
            preexec_fn=lambda: self.agent.demote(cpu_limit=True),
        )
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        pump = Pump(out_fd, err_fd, self.agent.cap)
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
        return result, b""

    def op_python(self, req: dict, blob: bytes) -> tuple[dict, bytes]:
        return self.python.op(req), b""

    def op_write(self, req: dict, blob: bytes) -> tuple[dict, bytes]:
        with AsAgent(self.agent.uid):
            self.files.write(req["path"], blob)
        return {}, b""

    def op_read(self, req: dict, blob: bytes) -> tuple[dict, bytes]:
        with AsAgent(self.agent.uid):
            return {}, self.files.read(req["path"], self.agent.max_file)

    def op_listdir(self, req: dict, blob: bytes) -> tuple[dict, bytes]:
        with AsAgent(self.agent.uid):
            return {"names": self.files.listdir(req["path"])}, b""

    def op_disk(self, req: dict, blob: bytes) -> tuple[dict, bytes]:
        return {"bytes": self.disk.used, "files": self.disk.files}, b""

    def op_ping(self, req: dict, blob: bytes) -> tuple[dict, bytes]:
        return {"pid": os.getpid(), "interpreter": self.python.interp.pid}, b""

    def handle(self, req: dict, blob: bytes) -> tuple[dict, bytes]:
        """One op, refused or stopped when it takes the branch over its disk cap."""
        resp, out = {}, b""
        try:
            since = _docker_disk.free()
            guarded = req["op"] in DISK_OPS
            if not (guarded and self.disk.check(since)):
                resp, out = self.ops[req["op"]](req, blob)
            if guarded and self.disk.check(None if req["op"] == "disk" else since):
                resp = {"error": self.disk.over, "limit": self.disk.limit}
        except OSError as e:
            limit = "file_size" if e.errno == errno.EFBIG else None
            resp = {"error": str(e), "errno": e.errno, "strerror": e.strerror, "limit": limit}
        except Exception as e:  # noqa: BLE001 - reported to the host, which raises it
            resp = {"error": f"{type(e).__name__}: {e}"}
        return resp, out if "error" not in resp else b""


class AsAgent:
    """File operations run with the agent's effective ids, so they obey its permissions."""

    def __init__(self, uid: int) -> None:
        self.uid = uid

    def __enter__(self) -> None:
        os.setegid(self.uid)
        os.seteuid(self.uid)

    def __exit__(self, *exc: object) -> None:
        os.seteuid(0)
        os.setegid(0)


def main() -> None:
    os.setgroups([])
    os.umask(0o022)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG
    worker = Worker(json.loads(sys.argv[1]))
    requests = reader(sys.stdin.buffer)
    while True:
        message = recv(requests)
        if message is None:
            break
        _wire.write(1, *worker.handle(*message))
    worker.python.interp.kill()


if __name__ == "__main__":
    main()
