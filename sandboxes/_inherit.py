"""What a fork must not carry from one branch into another: open files, pipes and shared
memory that agent code made before the fork.

os.fork() copies the descriptor table and maps MAP_SHARED memory into both processes, so
without this a file the parent held open would join every branch: a write through it lands
in the layer the fork froze, which the parent and all its children read as theirs; a pipe,
socket or memfd the parent made would be a channel between siblings; and a /proc
directory the parent kept open would lead the child back into the parent's processes and
root. Under RL that is how one branch would copy another's answer. So at each fork:

- a file or directory of the old root is opened again, by its path, in the new root, with
  the same flags and offset, under the same fd number; an unlinked one becomes a private
  copy;
- another regular file that is not read-only (a memfd, say) becomes a private copy, and
  anything else (pipes, sockets, event and /proc fds, ...) is replaced by /dev/null, whose
  number stays valid and connects nowhere; read-only files (/usr) and device nodes are
  kept;
- MAP_SHARED memory becomes private memory with the same contents.

The parent reopens its files in its new root at the fork, and keeps the rest: its
worker's heir (_worker.py's op_continue) holds them alone, all but its /proc, which had
the children's processes in view (`renew_proc`).

A file mapped MAP_SHARED is copied too, so the child's writes to it no longer reach the
file. Stdlib only.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import stat
from typing import NamedTuple

import _linux as L
from _world import STORE

_COPY_CHUNK = 1 << 20


class Held(NamedTuple):
    """A descriptor open on the root a process is about to leave."""

    fd: int
    path: str
    flags: int
    offset: int


def held_on_root(keep: set[int]) -> list[Held]:
    """Before leaving the root: the fds open on it (but the worker's own, `keep`), by
    the path each has there now."""
    fds = _open_fds(keep)
    if not fds:  # the common case, and a fork's critical path
        return []
    root = _root_mount()
    held = []
    for fd in fds:
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
    """Open fds but `keep`, and but the one the listing itself used."""
    fds = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd not in keep]
    return [fd for fd in fds if _is_open(fd)]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def renew_proc(keep: set[int]) -> None:
    """In a worker that keeps its root and mount namespace but has entered a pid
    namespace of its own: a /proc of that namespace in place of the old one, and every
    fd agent code held on the old one (its processes, and below them the children's,
    were in view there) replaced by /dev/null."""
    old = os.open("/proc", os.O_PATH | os.O_DIRECTORY)
    try:
        mount = _mount_of(old)
    finally:
        os.close(old)
    L.mount("proc", STORE, "proc", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)  # while a
    L.umount("/proc")  # full /proc is visible, which a new one needs
    L.mount(STORE, "/proc", None, L.MS_MOVE)
    for fd in _open_fds(keep):
        try:
            if _mount_of(fd) == mount:
                _replace_with_null(fd)
        except OSError:
            continue


def disconnect(keep: set[int]) -> None:
    """In a new branch, after `reopen`: nothing else left open may be shared with
    another branch."""
    fds = _open_fds(keep)
    root = _root_mount() if fds else -1
    for fd in fds:
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


class Region(NamedTuple):
    start: int
    length: int
    perms: str  # as /proc/self/maps gives them: "rw-s"


def shared_memory() -> list[Region]:
    """This process's MAP_SHARED regions. Read by the parent just before a fork (the child
    inherits the list): a child just forked would pay a copy-on-write fault for each page
    that reading and parsing them touches."""
    with open("/proc/self/maps", "rb") as f:
        lines = f.read().splitlines()
    regions = []
    for line in lines:
        span, perms = line.split(b" ", 2)[:2]
        if perms[3:4] == b"s":
            start, end = (int(x, 16) for x in span.split(b"-"))
            regions.append(Region(start, end - start, perms.decode()))
    return regions


def privatize(regions: list[Region]) -> None:
    """In a new branch: each of `regions` becomes private memory with the same contents,
    at the same address and protection."""
    for r in regions:
        prot = (mmap.PROT_READ * (r.perms[0] == "r") | mmap.PROT_WRITE * (r.perms[1] == "w")
                | mmap.PROT_EXEC * (r.perms[2] == "x"))
        copy = L.mmap_anonymous(r.length)
        if r.perms[0] == "r":
            ctypes.memmove(copy, r.start, r.length)
        L.mremap_onto(copy, r.length, r.start)
        L.mprotect(r.start, r.length, prot)

