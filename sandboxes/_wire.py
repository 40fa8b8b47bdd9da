"""The framing spoken between a LocalSandbox and its worker over a unix socket.

One message is a JSON header plus an optional raw blob (file contents travel as bytes,
never as base64) and, on `fork`, one file descriptor passed with SCM_RIGHTS: the new
branch's end of a fresh socketpair. Stdlib only, because the worker imports it too.
"""

from __future__ import annotations

import array
import json
import socket
import struct
from typing import Any, NamedTuple

_HEAD = struct.Struct("!II")
_MAX_FDS = 4
_UCRED = struct.Struct("iII")


class WireClosed(EOFError):
    """The peer closed the socket or died mid-message."""


def send(sock: socket.socket, header: dict[str, Any], blob: bytes = b"",
         fds: tuple[int, ...] = ()) -> None:
    body = json.dumps(header).encode()
    first = _HEAD.pack(len(body), len(blob)) + body
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sent = sock.sendmsg([first], anc)
        first = first[sent:]
    sock.sendall(first)
    if blob:
        sock.sendall(blob)


class Message(NamedTuple):
    header: dict[str, Any]
    blob: bytes
    fds: list[int]
    sender_pid: int | None
    """The sender's pid in the receiver's pid namespace, when SO_PASSCRED is on."""


def _recv_exact(sock: socket.socket, n: int, fds: list[int], pids: list[int]) -> bytes:
    buf = bytearray()
    fd_size = array.array("i").itemsize
    anc_size = socket.CMSG_SPACE(_MAX_FDS * fd_size) + socket.CMSG_SPACE(_UCRED.size)
    while len(buf) < n:
        data, anc, _flags, _addr = sock.recvmsg(min(n - len(buf), 1 << 20), anc_size)
        if not data:
            raise WireClosed("sandbox channel closed")
        for level, kind, payload in anc:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % fd_size])
                fds.extend(got)
            elif kind == socket.SCM_CREDENTIALS:
                pids.append(_UCRED.unpack(payload[: _UCRED.size])[0])
        buf += data
    return bytes(buf)


def recv(sock: socket.socket) -> Message:
    fds: list[int] = []
    pids: list[int] = []
    head_len, blob_len = _HEAD.unpack(_recv_exact(sock, _HEAD.size, fds, pids))
    header = json.loads(_recv_exact(sock, head_len, fds, pids))
    blob = _recv_exact(sock, blob_len, fds, pids) if blob_len else b""
    return Message(header, blob, fds, pids[0] if pids else None)
