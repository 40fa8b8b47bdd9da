"""What a fork must not carry from one branch into another: open files, pipes and shared
memory that agent code made before the fork.

os.fork() copies the descriptor table and maps MAP_SHARED memory into both processes, so
without this a file the parent held open would join every branch: a write through it lands
in the layer the fork froze, which the parent and all its children read as theirs; a pipe,
socket or memfd the parent made would be a channel between siblings; and a /proc
directory the parent kept open would lead the child back into the parent's processes and
root. Under RL that is how one branch would copy another's answer. So at each fork:

- a file or directory of the old root is opened again, by its path, in the new root, with
  the same flags and offset, under the same fd number (in the parent too, which has left
  its frozen layer as well); an unlinked one becomes a private copy;
- in the child, another regular file that is not read-only (a memfd, say) becomes a
  private copy, and anything else (pipes, sockets, event and /proc fds, ...) is replaced by
  /dev/null, whose number stays valid and connects nowhere; read-only files (/usr) and
  device nodes are kept;
- in the child, MAP_SHARED memory becomes private memory with the same contents.

A file mapped MAP_SHARED is copied too, so the child's writes to it no longer reach the
file. Stdlib only.
"""

from __future__ import annotations

import fcntl
import os
import stat
from typing import NamedTuple

_COPY_CHUNK = 1 << 20


class Held(NamedTuple):
    """A descriptor open on the root a process is about to leave."""

    fd: int
    path: str
    flags: int
    offset: int


def held_on_root(keep: set[int]) -> list[Held]:
    """Before leaving the root: the fds open on it, by the path each has there now."""
    root = _root_mount()
    held = []
    for fd in _open_fds(keep):
        try:
            if _mount_of(fd) == root:
                held.append(Held(fd, os.readlink(f"/proc/self/fd/{fd}"), _reopen_flags(fd),
                                 _offset(fd)))
        except OSError:  # the listing's own fd, closed by now
            continue
    return held


def reopen(held: list[Held]) -> None:
    """In the new root: each of `held` refers to the same path here (a file written
    through it is copied up into this branch's own layer); one unlinked is a copy."""
    for h in held:
        if h.path.endswith(" (deleted)"):
            _replace_with_copy(h.fd)
            continue
        try:
            new = os.open(h.path, h.flags)
        except OSError:
            _replace_with_null(h.fd)
            continue
        if h.offset:
            os.lseek(new, h.offset, os.SEEK_SET)
        _move(new, h.fd)


def _mount_of(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return int(next(line for line in f if line.startswith("mnt_id:")).split()[1])


def _root_mount() -> int:
    fd = os.open("/", os.O_PATH)
    try:
        return _mount_of(fd)
    finally:
        os.close(fd)


def _open_fds(keep: set[int]) -> list[int]:
    return [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd not in keep]


def disconnect(keep: set[int]) -> None:
    """In a new branch, after `reopen`: nothing else left open may be shared with
    another branch."""
    root = _root_mount()
    for fd in _open_fds(keep):
        try:
            st = os.fstat(fd)
            if _mount_of(fd) == root:  # reopened here by `reopen`
                continue
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode):
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            if _read_only(fd):
                continue
            if stat.S_ISREG(st.st_mode):
                _replace_with_copy(fd)
                continue
        _replace_with_null(fd)


def _reopen_flags(fd: int) -> int:
    """The flags `fd` was opened with, less those that act only at open (O_CREAT,
    O_TRUNC, O_EXCL: the kernel does not report them); _move restores close-on-exec."""
    keep = (os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK | os.O_DIRECTORY | os.O_PATH
            | os.O_NOFOLLOW | os.O_SYNC | os.O_DSYNC)
    return fcntl.fcntl(fd, fcntl.F_GETFL) & keep


def _read_only(fd: int) -> bool:
    try:
        return bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
    except OSError:  # O_PATH
        return False


def _offset(fd: int) -> int:
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:  # O_PATH and directories may not seek
        return 0


def _replace_with_copy(fd: int) -> None:
    """A memfd with `fd`'s contents and offset, in its place."""
    try:
        offset, size = _offset(fd), os.fstat(fd).st_size
        copy = os.memfd_create("branch-copy", 0)
        done = 0
        while done < size:
            chunk = os.pread(fd, min(_COPY_CHUNK, size - done), done)
            if not chunk:
                break
            os.pwrite(copy, chunk, done)
            done += len(chunk)
    except OSError:  # unreadable (write-only, O_PATH): nothing to copy
        _replace_with_null(fd)
        return
    os.lseek(copy, offset, os.SEEK_SET)
    _move(copy, fd)


def _replace_with_null(fd: int) -> None:
    _move(os.open("/dev/null", os.O_RDWR), fd)


def _move(new: int, fd: int) -> None:
    os.dup2(new, fd, inheritable=os.get_inheritable(fd))
    os.close(new)


def privatize_shared_memory() -> None:
    """In a new branch: each MAP_SHARED region becomes private memory with the same
    contents, at the same address and protection. Only then is ctypes loaded (it is big,
    and a fork copies whatever the worker holds)."""
    regions = []
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            if perms[3] == "s":
                start, end = (int(x, 16) for x in span.split("-"))
                regions.append((start, end - start, perms))
    if not regions:
        return
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = libc.mremap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                            ctypes.c_void_p]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    for start, length, perms in regions:
        prot = (mmap.PROT_READ * (perms[0] == "r") | mmap.PROT_WRITE * (perms[1] == "w")
                | mmap.PROT_EXEC * (perms[2] == "x"))
        copy = libc.mmap(None, length, rw, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if copy in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "cannot copy shared memory")
        if perms[0] == "r":
            ctypes.memmove(copy, start, length)
        moved = libc.mremap(copy, length, length, _MREMAP_MAYMOVE | _MREMAP_FIXED, start)
        if moved != start or libc.mprotect(start, length, prot) != 0:
            raise OSError(ctypes.get_errno(), "cannot replace shared memory")


_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2
