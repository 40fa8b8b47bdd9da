"""The `local` backend: namespaces + overlayfs + a forking interpreter, no daemon.

Each `LocalSandbox` talks to one worker process (see `_worker.py`) over a unix socket.
Sandboxes forked from one another form a *tree* that shares a user, pid, net, ipc and
uts namespace and one in-memory layer store; every sandbox has its own mount namespace
and root. `fork()` asks the worker to `os.fork()`, so the child starts with the
parent's files and the interpreter's memory, in a few milliseconds.

Fork methods (reported in `capabilities.fork_method`):
- "overlayfs" (default): the parent's upper layer is frozen as a new lower and both
  sides get a fresh upper. Cost is independent of the workspace size. Stacks are
  squashed into one layer every `squash_every` levels, before overlayfs' depth limit.
- "copy": each root is a plain directory and a fork runs `cp -a` over it. Chosen
  automatically where overlayfs cannot be mounted in a user namespace (kernels before
  5.11), or on request (`LocalSandbox(fork_method="copy")`). Cost grows with the size
  of the workspace.

User namespaces are required (the docker backend's default tree sandbox nests this same
worker, so it needs them too); where they are disabled (sysctl, AppArmor) opening a
sandbox raises `SandboxError` saying so, and names the way out: docker commit forks.
"""

from __future__ import annotations

import logging
import platform
import socket
import threading
import time
import weakref
from typing import Any

from pydantic import ValidationError

from . import _seccomp, _wire
from ._files import WORKDIR
from ._handles import _Tree, _Worker, worker_processes
from ._launch import FORK_METHODS, Adopt, HostLauncher, Launcher, TreeSpec
from .base import (
    Capabilities,
    ExecResult,
    LimitExceeded,
    Sandbox,
    SandboxDead,
    SandboxError,
    SandboxLimits,
)

_GRACE = 3.0  # seconds the host waits beyond a call's own timeout before killing the worker
logger = logging.getLogger(__name__)
_HELLO_BYTES = 4096
_LISTING_BYTES = 16 << 20  # of file names in one listdir reply
_WAY_OUT = ("where user namespaces are off, open_sandbox('docker', fork_method='commit') "
            "needs none (it forks files, not interpreter memory)")
_ISOLATION = ["user-ns", "mount-ns", "pid-ns", "pid-ns-per-branch", "sibling-pid-ns-at-fork",
              "store-out-of-reach", "ipc-ns", "uts-ns", "ipc-uts-net-ns-per-branch",
              "no-shared-fds-across-forks", "rlimits", "no-caps-for-shell",
              *(["seccomp-for-shell", "seccomp-for-python"]
                if _seccomp.program(platform.machine()) else [])]


class LocalSandbox(Sandbox):
    """A sandbox made of Linux namespaces on this machine. Works as root and unprivileged.

    `limits` (or keyword overrides of its fields, e.g. `timeout=5`) caps every call.
    Backend options: `fork_method` ("overlayfs" or "copy"), `disk_mb` (size of the
    tree's in-memory layer store), `squash_every` (overlay depth that triggers a squash),
    `max_tree_processes` (a hard cap on processes in one tree, all branches together),
    `tree_memory_mb` (the tree's memory cgroup, processes and layer store together,
    where this process may make one: see _cgroup.py), `tree_cpus` (the CPU cores that
    cgroup allows the tree; None: no cap), `sandbox_uid` (the host uid the sandbox runs
    as when the host process is root; by default one of its own per tree, so one tree's
    per-uid kernel quotas are not another's) and `python` (the interpreter, which must
    live under /usr to be visible inside). `launcher` says where the tree's first worker
    runs (default: `HostLauncher(sandbox_uid, python)`, this machine; docker_tree.py's
    puts it in a container); everything after its hello is this class's, either way.
    """

    def __init__(
        self,
        limits: SandboxLimits | dict[str, Any] | None = None,
        *,
        fork_method: str = "overlayfs",
        disk_mb: int = 2048,
        squash_every: int = 32,
        max_tree_processes: int = 1024,
        tree_memory_mb: int = 4096,
        tree_cpus: float | None = 2.0,
        sandbox_uid: int | None = None,
        python: str = "/usr/bin/python3",
        start_timeout: float = 30.0,
        launcher: Launcher | None = None,
        **limit_fields: Any,
    ) -> None:
        self.limits = SandboxLimits.merge(limits, limit_fields)
        spec = TreeSpec(self.limits, fork_method, disk_mb, squash_every, max_tree_processes,
                        tree_memory_mb, tree_cpus)
        started = (launcher or HostLauncher(sandbox_uid, python)).start(spec)
        self._profile = started.profile
        try:
            self._attach(started.tree, started.sock, start_timeout)
        except BaseException:
            started.sock.close()
            if started.new_tree:
                started.tree.kill()
            raise

    def _attach(self, tree: _Tree, sock: socket.socket, start_timeout: float) -> None:
        """Wait for a worker's hello; its credentials tell us its pid in our namespace."""
        hello = _hello(sock, start_timeout)
        self._start_timeout = start_timeout
        self._method: str = hello.header["method"]
        self._lock = threading.Lock()
        self._dead: str | None = None
        self._forked = False  # forked since its worker last moved on (_move_on)
        self._worker = _Worker(tree, sock, hello.sender_pid)
        self._finalizer = weakref.finalize(self, self._worker.stop)

    # -- the Sandbox contract -------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        overlay = self._method == "overlayfs"
        profile = self._profile
        return Capabilities(
            backend=profile.backend, forks_files=True, forks_memory=True,
            fork_method=self._method,
            isolation=[*profile.walls, *_ISOLATION,
                       *([] if self.limits.network else ["net-ns"]), *profile.tree_isolation],
            notes=("one container per tree, running the local backend's forking worker: "
                   if profile.container_id else "")
            + ("fork = os.fork of the worker + " + (
                "a new overlayfs upper layer per side (O(1) in workspace size)" if overlay
                else "cp -a of the root (slower; grows with the workspace)"))
            + "; each branch has its own root and pid namespace and only the tree's "
              "layer keeper mounts the layers; a child's pid namespace nests in its "
              "parent's, so a fork ends the parent's background processes and, before "
              "the parent's next call, its worker hands over to a new one in a namespace "
              "beside its children's (one level deeper each time, up to the kernel's 32 "
              "levels; past them forks share their parent's namespace), so no branch "
              "reaches another's files or processes, its parent's or children's included; "
              "until that next call the parent's worker, which runs no agent code but "
              "what earlier calls may have planted in it, is the one process that could; "
              "in the child, pipes, sockets and other non-file descriptors become "
              "/dev/null; the parent keeps its own, but for its old /proc; python() code "
              "still runs as root "
              "of the tree's user namespace in the worker process, so it can forge that "
              "worker's replies (never the host: every reply is bounded and checked, and "
              "host file operations follow no links); shell commands run without "
              "capabilities, under seccomp; memory is capped per process "
              "(RLIMIT_AS) and " + (
                  f"for the whole tree by {profile.tree_cap}" if profile.tree_cap else
                  "not for the tree as a whole (no cgroup could be made here: that needs "
                  "root or a delegated cgroup)"),
        )

    def run(self, cmd: str, timeout: float | None = None) -> ExecResult:
        return self._exec({"op": "run", "cmd": cmd}, timeout)

    def python(self, code: str, timeout: float | None = None) -> ExecResult:
        return self._exec({"op": "python", "code": code}, timeout)

    def write_file(self, path: str, content: str | bytes) -> None:
        data = content.encode() if isinstance(content, str) else bytes(content)
        self._call({"op": "write", "path": path}, data)

    def read_file(self, path: str) -> bytes:
        return self._call({"op": "read", "path": path}).blob

    def listdir(self, path: str = ".") -> list[str]:
        return list(self._call({"op": "listdir", "path": path}).header["names"])

    def fork(self) -> LocalSandbox:
        reply, host_end = self._spawn("fork")
        self._forked = True
        return type(self)(self.limits, start_timeout=self._start_timeout,
                          launcher=Adopt(self._worker.tree, host_end, self._profile))

    def close(self) -> None:
        self._finalizer()

    @property
    def host_pid(self) -> int:
        """The worker's pid in this process's pid namespace, for measurements."""
        return self._worker.pid

    def ping(self) -> int:
        """Round trip to the worker; returns its pid inside the sandbox."""
        return int(self._call({"op": "ping"}).header["pid"])

    # -- talking to the worker ------------------------------------------------------
    def _exec(self, request: dict[str, Any], timeout: float | None) -> ExecResult:
        seconds = self.limits.timeout if timeout is None else float(timeout)
        if seconds <= 0:
            raise SandboxError(f"timeout must be positive, got {seconds}")
        try:
            reply = self._call({**request, "timeout": seconds}, wait=seconds + _GRACE)
        except _Unresponsive:
            return ExecResult(stderr=f"killed: the sandbox did not stop within {seconds:g} s "
                              f"(+{_GRACE:g} s grace) and was shut down",
                              exit_code=137, timed_out=True, seconds=seconds + _GRACE)
        cap = self.limits.max_output_bytes
        try:
            result = ExecResult.model_validate(reply.header, strict=True)
        except ValidationError as e:
            raise self._broken(f"a malformed result ({e.error_count()} bad fields)") from None
        if len(result.stdout) > cap or len(result.stderr) > cap:
            raise self._broken(f"more output than the {cap} B cap")
        return result

    def _move_on(self) -> None:
        """Before a forked branch's next call, its worker hands over to a new one in a pid
        namespace beside its children's (_worker.py's op_continue), so nothing the call
        does can reach them; the old worker is killed."""
        self._forked = False
        reply, host_end = self._spawn("continue")
        if not reply.header.get("moved"):
            host_end.close()
            return
        retired = self._worker
        try:
            hello = _hello(host_end, self._start_timeout)
        except SandboxError as e:
            host_end.close()
            self._die(f"its worker did not hand over after a fork ({e})")
            raise SandboxDead(f"sandbox is dead: {self._dead}") from None
        with self._lock:
            self._worker = _Worker(retired.tree, host_end, hello.sender_pid)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, self._worker.stop)
        retired.stop(holds_branches=True)

    def _spawn(self, op: str) -> tuple[_wire.Message, socket.socket]:
        """Ask the worker (`op`: fork or continue) to start a worker on a new channel;
        the reply, and our end, where that worker's hello will come."""
        host_end, their_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        host_end.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        try:
            reply = self._call({"op": op}, fds=(their_end.fileno(),))
        except BaseException:
            host_end.close()
            raise
        finally:
            their_end.close()
        tree = self._worker.tree
        if reply.header.get("shared_namespace") and not tree.warned_depth:
            tree.warned_depth = True
            logger.warning(
                "a sandbox branch went past the kernel's 32 nested pid namespaces: from "
                "here its forks share its namespace and can see and signal each other's "
                "processes; each fork, and each call after one, nests one level deeper")
        return reply, host_end

    def _call(self, header: dict[str, Any], blob: bytes = b"", fds: tuple[int, ...] = (),
              wait: float | None = None) -> _wire.Message:
        """One request and its reply, all of it within `wait` seconds (default: the
        limits' timeout plus grace); a reply that breaks the protocol kills the branch.
        The first request after a fork, but another fork, moves the branch on first."""
        if self._forked and header["op"] not in ("fork", "continue"):
            self._move_on()
        seconds = self.limits.timeout + _GRACE if wait is None else wait
        blob_cap = self.limits.max_file_mb << 20 if header["op"] == "read" else 0
        bounds = _wire.Bounds(time.monotonic() + seconds, self._max_header(), blob_cap,
                              fds=False)
        with self._lock:
            if self._dead is not None:
                raise SandboxDead(f"sandbox is dead: {self._dead}")
            if self._worker.stopped:
                raise SandboxDead("sandbox is closed")
            sock = self._worker.sock
            try:
                _wire.send(sock, header, blob, fds)
                reply = _wire.recv(sock, bounds)
            except TimeoutError:
                self._die("it did not answer in time and was killed")
                raise _Unresponsive() from None
            except _wire.WireError as e:
                raise self._broken(str(e)) from None
            except (_wire.WireClosed, OSError) as e:
                self._die(self._death_reason())
                raise SandboxDead(f"sandbox is dead: {self._dead}") from e
            except BaseException:  # KeyboardInterrupt mid-call: the channel is out of step
                self._die("a call was interrupted")
                raise
        if "error" in reply.header:
            limit = reply.header.get("limit")
            if limit:
                raise LimitExceeded(str(limit), f"{reply.header['error']} (limit: {limit})")
            raise SandboxError(str(reply.header["error"]))
        return reply

    def _max_header(self) -> int:
        """Two captured streams, each char JSON-escaped to at most 6 bytes, plus room for
        a listing; anything claiming more is not a worker's honest reply."""
        return 12 * self.limits.max_output_bytes + _LISTING_BYTES

    def _broken(self, what: str) -> SandboxDead:
        """Kill a branch whose channel carried something no honest worker sends."""
        self._die(f"its channel broke the protocol ({what}); code in the sandbox may have "
                  "tampered with it")
        return SandboxDead(f"sandbox is dead: {self._dead}")

    def _death_reason(self) -> str:
        if self._worker.tree.oom_kills() > self._worker.oom_kills:
            return ("the tree's memory cgroup killed it: the tree ran out of its "
                    "tree_memory_mb")
        return "its worker exited (killed, crashed, or the code it ran ended it)"

    def _die(self, reason: str) -> None:
        self._dead = reason
        self._worker.stop()


def _hello(sock: socket.socket, timeout: float) -> _wire.Message:
    """A new worker's hello, checked: it names the fork method and carries credentials."""
    bounds = _wire.Bounds(time.monotonic() + timeout, _HELLO_BYTES, 0, fds=False)
    try:
        hello = _wire.recv(sock, bounds)
    except (TimeoutError, _wire.WireClosed, _wire.WireError, OSError) as e:
        raise SandboxError(f"the sandbox worker did not start ({e or type(e).__name__}); "
                           f"user namespaces may be disabled on this host; {_WAY_OUT}"
                           ) from e
    if "error" in hello.header:
        raise SandboxError(f"{hello.header['error']}; {_WAY_OUT}")
    if hello.sender_pid is None or not isinstance(hello.header.get("method"), str):
        raise SandboxError("the sandbox worker's hello was malformed or carried no "
                           "credentials")
    return hello


class _Unresponsive(Exception):
    """The worker overran a call's timeout plus grace and has been killed."""


__all__ = ["FORK_METHODS", "WORKDIR", "LocalSandbox", "worker_processes"]
