"""The framing every sandbox worker speaks with its host, and the commit worker with its
interpreter: a JSON header plus an optional raw blob (file contents travel as bytes, never
as base64). Over a unix socket (local and docker-tree workers) a message may also carry,
on `fork`, one file descriptor with SCM_RIGHTS: the new branch's end of a fresh
socketpair. Over the commit backend's `docker exec` stream the same frames travel inside
docker's stdout multiplexing. Stdlib only, because the workers import it too.

The host reads what a worker sends as hostile: the worker runs agent code, which can
write anything to the channel. So a read takes a `Bounds`: one deadline for the whole
message (a peer that trickles a byte a second is still cut off), caps on the header and
blob lengths it claims, and whether descriptors are expected at all. Descriptors arrive
close-on-exec and any not expected are closed at once, so a flood cannot pin memory or
exhaust the host's table. Every breach raises `WireError`, which the host treats as the
branch being dead.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

_HEAD = struct.Struct("!II")
_MAX_FDS = 4
_UCRED = struct.Struct("iII")
_FD_SIZE = array.array("i").itemsize
_ANC_SIZE = socket.CMSG_SPACE(_MAX_FDS * _FD_SIZE) + socket.CMSG_SPACE(_UCRED.size)


class WireClosed(EOFError):
    """The peer closed the socket or died mid-message."""


class WireError(ValueError):
    """The peer broke the protocol: too slow, too long, malformed, or unexpected fds."""


class Bounds(NamedTuple):
    """What a reader accepts; the defaults trust the peer (the worker reading the host)."""

    deadline: float | None = None  # time.monotonic() by which the whole message is in
    max_header: int = 1 << 62
    max_blob: int = 1 << 62
    fds: bool = True  # whether the message may carry descriptors


TRUSTED = Bounds()


def pack(header: dict[str, Any], blob: bytes = b"") -> bytes:
    """One message's header part; the blob follows it on the wire."""
    body = json.dumps(header).encode()
    return _HEAD.pack(len(body), len(blob)) + body


def unpack(exact: Callable[[int], bytes], bounds: Bounds = TRUSTED) -> tuple[dict[str, Any], bytes]:
    """Read one message with `exact(n)` (n bytes, or raise), checking it against `bounds`
    (whose deadline is `exact`'s to keep)."""
    head_len, blob_len = _HEAD.unpack(exact(_HEAD.size))
    if head_len > bounds.max_header or blob_len > bounds.max_blob:
        raise WireError(f"the sandbox claimed a {head_len} B header and a {blob_len} B "
                        f"blob (caps {bounds.max_header} and {bounds.max_blob})")
    try:
        header = json.loads(exact(head_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"the sandbox sent a malformed header ({e})") from None
    if not isinstance(header, dict):
        raise WireError(f"the sandbox sent a {type(header).__name__} header, not an object")
    return header, exact(blob_len) if blob_len else b""


def write(fd: int, header: dict[str, Any], blob: bytes = b"") -> None:
    """Send one message down a pipe or stream fd (no descriptors go this way)."""
    for part in (pack(header, blob), blob):
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view):]


def send(sock: socket.socket, header: dict[str, Any], blob: bytes = b"",
         fds: tuple[int, ...] = ()) -> None:
    first = pack(header, blob)
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sent = sock.sendmsg([first], anc)
        first = first[sent:]
    if first:  # an empty send to a peer that has read it all and closed fails with EPIPE
        sock.sendall(first)
    if blob:
        sock.sendall(blob)


class Message(NamedTuple):
    header: dict[str, Any]
    blob: bytes
    fds: list[int]
    sender_pid: int | None
    """The sender's pid in the receiver's pid namespace, when SO_PASSCRED is on."""


class _Reader:
    """One message's worth of reads under one set of bounds."""

    def __init__(self, sock: socket.socket, bounds: Bounds) -> None:
        self.sock, self.bounds = sock, bounds
        self.fds: list[int] = []
        self.pids: list[int] = []

    def exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if self.bounds.deadline is not None:
                left = self.bounds.deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the sandbox's reply did not arrive in time")
                self.sock.settimeout(left)
            data, anc, _flags, _addr = self.sock.recvmsg(
                min(n - len(buf), 1 << 20), _ANC_SIZE, socket.MSG_CMSG_CLOEXEC)
            self._ancillary(anc)
            if not data:
                raise WireClosed("sandbox channel closed")
            buf += data
        return bytes(buf)

    def _ancillary(self, anc: list[tuple[int, int, bytes]]) -> None:
        for level, kind, payload in anc:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
                self.fds.extend(got)
            elif kind == socket.SCM_CREDENTIALS:
                self.pids.append(_UCRED.unpack(payload[: _UCRED.size])[0])

    def close_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def recv(sock: socket.socket, bounds: Bounds = TRUSTED) -> Message:
    reader = _Reader(sock, bounds)
    try:
        header, blob = unpack(reader.exact, bounds)
        if reader.fds and not bounds.fds:
            raise WireError(f"the sandbox sent {len(reader.fds)} unexpected descriptors")
    except BaseException:
        reader.close_fds()
        raise
    return Message(header, blob, reader.fds, reader.pids[0] if reader.pids else None)


def ask(sock: socket.socket, header: dict[str, Any]) -> Message:
    """One request to a peer the caller trusts (a worker asking its tree's keeper or its
    branch's init); an error it answers is raised as OSError."""
    send(sock, header)
    reply = recv(sock)
    if "error" in reply.header:
        for fd in reply.fds:
            os.close(fd)
        raise OSError(f"{header['op']}: {reply.header['error']}")
    return reply
