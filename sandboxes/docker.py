"""Docker sandboxes forked with `docker commit`: one hardened container per branch.

This is `open_sandbox("docker", fork_method="commit")`; the default docker sandbox is
`DockerTreeSandbox` (docker_tree.py), which forks memory too, in milliseconds. Commit
forks are for durable snapshots: each branch is an image that outlives the process.

Each container runs an in-container worker (`_docker_worker.py`) reached over a single
`docker exec` stream, so tool calls cost a socket round trip rather than a new exec. The
worker keeps the agent's Python interpreter alive between calls.

`fork()` copies files, not memory: it commits the container's writable layer to an
image and starts a new container from it. Copying a live interpreter needs CRIU
(`docker checkpoint`), which fails on the kernels treegym targets, so a forked child gets
a fresh interpreter. `capabilities` says so; use the default docker fork method (or the
local backend) when interpreter state must survive a fork.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
import weakref
from typing import Any

from . import _wire
from ._docker_boot import BOOTSTRAP, LOADER, run_options
from ._docker_owned import ImageLedger, cleanup, sweep_once
from .base import (
    Capabilities,
    ExecResult,
    LimitExceeded,
    Sandbox,
    SandboxDead,
    SandboxError,
    SandboxLimits,
)
from .docker_image import AGENT_UID, AGENT_USER, WORKDIR, docker_client, ensure_image

FORK_REPOSITORY = "treegym/sandbox-fork"
# How long past a call's own timeout the worker may take to answer before it counts as hung.
REPLY_GRACE = 15.0
INTERRUPT_GRACE = 1.0
_MAX_FRAME_BASE = 16 << 20  # header bytes beyond the two captured streams
class DockerSandbox(Sandbox):
    """A sandbox in a hardened container: no network, no capabilities for agent code,
    a non-root agent user, and memory, process, CPU-time and file-size caps.

    The root filesystem stays writable for root because `docker commit` captures only the
    container's writable layer (not tmpfs or volumes); the agent still can write only
    /workspace, its home and /tmp, since it is uid 1000 without capabilities.
    A custom `image` needs python3 (tested: bookworm's 3.11), bash, a uid-1000 user and
    /workspace, as `ensure_image` builds them.
    `disk_mb` and `max_files` cap the files a branch holds wherever the agent can write;
    past one, its processes are killed, the call raises `LimitExceeded` ("disk"/"files")
    and the branch refuses calls, writes and forks. It holds to within what the agent
    writes in one poll (_docker_disk.py says how it is enforced, and why not by docker).
    """

    def __init__(
        self,
        image: str | None = None,
        limits: SandboxLimits | dict[str, Any] | None = None,
        client: Any = None,
        *,
        disk_mb: int = 2048,
        max_files: int = 100_000,
        _ledger: ImageLedger | None = None,
        **limit_fields: Any,
    ) -> None:
        self.limits = SandboxLimits.merge(limits, limit_fields)
        self._disk = {"disk_mb": disk_mb, "max_files": max_files}
        if min(self._disk.values()) < 1:
            raise SandboxError(f"disk_mb={disk_mb} and max_files={max_files} must be >= 1")
        self._client = client or docker_client()
        sweep_once(self._client)
        self._image = image or ensure_image(client=self._client)
        self._ledger = _ledger or ImageLedger(self._client)
        self._lock = threading.Lock()
        self._closed = False
        self._dead: str | None = None
        self._raw = bytearray()
        self._out = bytearray()
        self._err = bytearray()
        self._conn: list[socket.socket] = []
        self._container = self._client.containers.run(self._image, **run_options(self.limits))
        self._ledger.use(self._image, self._container.id)
        self._finalizer = weakref.finalize(
            self,
            cleanup,
            self._client,
            self._container.id,
            self._conn,
            self._ledger,
            self._image,
        )
        try:
            self._start_worker()
        except BaseException:
            self.close()
            raise

    def _start_worker(self) -> None:
        config = {
            "uid": AGENT_UID,
            "user": AGENT_USER,
            "home": f"/home/{AGENT_USER}",
            "workdir": WORKDIR,
            "max_output_bytes": self.limits.max_output_bytes,
            "cpu_seconds": self.limits.cpu_seconds,
            "memory_mb": self.limits.memory_mb,
            "max_file_mb": self.limits.max_file_mb,
            **self._disk,
        }
        api = self._client.api
        cmd = ["python3", "-I", "-u", "-c", BOOTSTRAP, json.dumps(config)]
        self._exec_id = api.exec_create(
            self._container.id,
            cmd,
            stdin=True,
            stdout=True,
            stderr=True,
            user="root",
            workdir="/",
        )["Id"]
        stream = api.exec_start(self._exec_id, socket=True)
        sock = getattr(stream, "_sock", stream)
        self._conn.append(sock)
        sock.sendall(LOADER)
        self._call({"op": "ping"}, timeout=60)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            backend="docker",
            forks_files=True,
            forks_memory=False,
            fork_method="commit",
            isolation=[
                "container",
                "network" if self.limits.network else "no-network",
                "no-capabilities",
                "no-new-privileges",
                "non-root",
                "memory-cgroup",
                "pids-cgroup",
                "rlimits",
                "disk-cap",
            ],
            notes=(
                "fork() runs `docker commit` on the container and starts a new container "
                "from that image: files are copied, interpreter memory is not, because "
                "copying a live process needs CRIU (`docker checkpoint`), which fails on "
                "this kernel. A forked child starts with a fresh Python interpreter."
            ),
        )

    def run(self, cmd: str, timeout: float | None = None) -> ExecResult:
        seconds = timeout or self.limits.timeout
        start = time.perf_counter()
        reply = self._call({"op": "run", "cmd": cmd, "timeout": seconds}, seconds + REPLY_GRACE)
        return ExecResult(**reply, seconds=time.perf_counter() - start)

    def python(self, code: str, timeout: float | None = None) -> ExecResult:
        seconds = timeout or self.limits.timeout
        start = time.perf_counter()
        reply = self._call(
            {"op": "python", "code": code, "timeout": seconds},
            seconds + INTERRUPT_GRACE + REPLY_GRACE,
        )
        return ExecResult(**reply, seconds=time.perf_counter() - start)

    def write_file(self, path: str, content: str | bytes) -> None:
        data = content.encode() if isinstance(content, str) else content
        self._call({"op": "write", "path": path}, blob=data)

    def read_file(self, path: str) -> bytes:
        return self._call({"op": "read", "path": path}, with_blob=True)

    def listdir(self, path: str = ".") -> list[str]:
        return self._call({"op": "listdir", "path": path})["names"]

    def fork(self) -> DockerSandbox:
        """Snapshot the files with `docker commit` and start a sibling container from them.

        The container is paused while it is committed, so the snapshot is consistent even
        if background processes are writing. A branch over its disk cap is not forked.
        """
        self._call({"op": "disk"})
        with self._lock:
            self._check_alive()
            snapshot = self._container.commit(
                repository=FORK_REPOSITORY, tag=uuid.uuid4().hex[:16], pause=True
            )
        self._ledger.add(snapshot.id, parent=self._image)
        try:
            return DockerSandbox(
                image=snapshot.id, limits=self.limits, client=self._client, _ledger=self._ledger,
                **self._disk,
            )
        except BaseException:
            self._ledger.release(snapshot.id, None)
            raise

    def close(self) -> None:
        self._closed = True
        self._finalizer()

    @property
    def container_id(self) -> str:
        return self._container.id

    def _check_alive(self) -> None:
        if self._closed:
            raise SandboxDead("the sandbox was closed")
        if self._dead is not None:
            raise SandboxDead(self._dead)

    def _call(self, request: dict, timeout: float = 60.0, blob: bytes = b"",
              with_blob: bool = False) -> Any:
        """One request and its reply (the header, or with `with_blob` the blob), all of it
        within `timeout` seconds; a reply that breaks the protocol (too long, not JSON, not
        an object) kills the sandbox."""
        with self._lock:
            self._check_alive()
            sock = self._conn[0]
            try:
                sock.sendall(_wire.pack(request, blob) + blob)
                reply, data = self._recv(time.monotonic() + timeout)
            except TimeoutError:
                self._dead = f"the sandbox worker did not answer within {timeout:.0f} s"
            except _wire.WireError as e:
                self._dead = f"its channel broke the protocol ({e})"
            except _wire.WireClosed:
                self._dead = self._death_reason()
            except OSError as e:
                self._dead = f"lost the connection to the sandbox worker ({e})"
            if self._dead is not None:
                raise SandboxDead(self._dead)
        if "error" in reply:
            _raise_for(reply, request.get("path"))
        return data if with_blob else reply

    def _recv(self, deadline: float) -> tuple[dict, bytes]:
        """One worker message, unwrapped from docker's stdout/stderr multiplexing."""
        limits = self.limits
        bounds = _wire.Bounds(deadline, _MAX_FRAME_BASE + 12 * limits.max_output_bytes,
                              limits.max_file_mb << 20, fds=False)
        return _wire.unpack(lambda n: self._stdout(n, deadline), bounds)

    def _stdout(self, n: int, deadline: float) -> bytes:
        """The next `n` bytes the worker wrote to its stdout; what it wrote to stderr is
        kept for the death report."""
        cap = _MAX_FRAME_BASE + 12 * self.limits.max_output_bytes + (self.limits.max_file_mb << 20)
        while len(self._out) < n:
            self._fill(8, deadline)
            stream, size = self._raw[0], struct.unpack(">I", self._raw[4:8])[0]
            if size > cap:
                raise _wire.WireError(f"a {size} B stream chunk, over the {cap} B cap")
            self._fill(8 + size, deadline)
            payload = self._raw[8 : 8 + size]
            del self._raw[: 8 + size]
            if stream == 1:
                self._out += payload
            else:
                self._err = (self._err + payload)[-4000:]
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._raw) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the sandbox's reply did not arrive in time")
            self._conn[0].settimeout(left)
            chunk = self._conn[0].recv(1 << 16)
            if not chunk:
                raise _wire.WireClosed("the worker's stream ended")
            self._raw += chunk

    def _death_reason(self) -> str:
        """Say why the worker stopped answering: the container's fate, then the worker's."""
        import docker.errors

        parts = []
        try:
            self._container.reload()
            state = self._container.attrs["State"]
            if state.get("OOMKilled"):
                parts.append("the container hit its memory limit and was OOM-killed")
            if not state.get("Running"):
                parts.append(f"the container stopped (exit code {state.get('ExitCode')})")
            code = self._client.api.exec_inspect(self._exec_id).get("ExitCode")
            if code is not None:
                parts.append(f"the worker exited with code {code}")
        except docker.errors.NotFound:
            parts.append("the container was removed from outside treegym")
        tail = self._err.decode("utf-8", "replace").strip()
        if tail:
            parts.append(f"worker stderr: {tail[-800:]}")
        return "; ".join(parts) or "the sandbox worker closed its connection"


def _raise_for(reply: dict, path: str | None) -> None:
    """Turn a worker's error reply into the exception envs catch: SandboxError, or
    LimitExceeded when a cap (file size) caused it."""
    where = f"{path}: " if path else ""
    cause = reply.get("strerror") or reply["error"]
    if reply.get("limit"):
        raise LimitExceeded(reply["limit"], f"{where}{reply['limit']} limit reached ({cause})")
    raise SandboxError(f"{where}{cause}")
