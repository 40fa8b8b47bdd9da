"""The host's file operations on a branch's work dir, resolved by the kernel, never by path.

One implementation, and one work dir, for every backend: the local worker and the commit
backend's container worker (which is sent this file) both use it on `WORKDIR`.

Why not `realpath` and `open`: the agent owns everything under the work dir and may
replace any component with a symlink (or bind-mount something over it) between the
check and the open. A link to `/.tg/...` followed by a host-side write would write into
the tree's shared bottom layer, which every sibling and later fork sees. So every open
here is `openat2` from a descriptor of the work dir with RESOLVE_BENEATH (no way out by
`..` or an absolute link), RESOLVE_NO_SYMLINKS and RESOLVE_NO_XDEV (no links, no mount
crossings, at any component), and the work dir itself is opened the same way from `/`.
Only regular files are read or written, and opens are non-blocking, so a FIFO or a
device planted under the name cannot hang or flood the worker. Stdlib only: the worker
scripts import this.
"""

from __future__ import annotations

import errno
import os
import stat

if __package__:
    from . import _linux as L
else:  # loaded by a standalone worker script
    import _linux as L  # type: ignore[no-redef]

# Where agent code starts and relative paths resolve, in every backend; its home is apart.
WORKDIR = "/workspace"
HOME = "/home/agent"
_RESOLVE = L.RESOLVE_BENEATH | L.RESOLVE_NO_SYMLINKS | L.RESOLVE_NO_XDEV | L.RESOLVE_NO_MAGICLINKS
_WHY = {errno.ELOOP: "a symlink is on the way (host-side file operations follow none)",
        errno.EXDEV: "it leads outside the sandbox's work dir {}, or across a mount",
        errno.ENXIO: "it is not a regular file"}


class FileRefused(PermissionError):
    """The path names something the host will not touch; the message says why."""


class WorkDir:
    """Reads, writes and listings beneath one work dir, under the rules above."""

    def __init__(self, root: str) -> None:
        self.root = root

    def read(self, path: str, max_bytes: int) -> bytes:
        fd = self._open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self._regular(fd, path)
            chunks, total = [], 0
            while data := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
                total += len(data)
                if total > max_bytes:
                    raise OSError(errno.EFBIG, f"larger than the {max_bytes >> 20} MiB file "
                                  "cap", path)
                chunks.append(data)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes) -> None:
        rel = self._relative(path)
        parent = os.path.dirname(rel)
        if parent:
            self._make_dirs(path, parent)
        fd = self._open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, rel=rel)
        try:
            self._regular(fd, path)
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def _relative(self, path: str) -> str:
        if os.path.isabs(path):
            rel = os.path.relpath(os.path.normpath(path), self.root)
            if rel == ".." or rel.startswith("../"):
                raise FileRefused(f"path {path!r} is outside the sandbox's work dir "
                                  f"{self.root}")
            return rel
        return path or "."

    def _open(self, path: str, flags: int, mode: int = 0o644, rel: str | None = None) -> int:
        """`path` opened beneath the work dir under `_RESOLVE`."""
        rel = self._relative(path) if rel is None else rel
        try:
            root = L.openat2(-100, self.root, os.O_PATH | os.O_DIRECTORY, 0,
                             L.RESOLVE_NO_SYMLINKS | L.RESOLVE_NO_XDEV)
        except OSError as e:
            raise FileRefused(f"the work dir {self.root} was replaced ({e.strerror})") from None
        try:
            return L.openat2(root, rel, flags, mode if flags & os.O_CREAT else 0, _RESOLVE)
        except OSError as e:
            if e.errno in _WHY:
                why = _WHY[e.errno].format(self.root)
                raise FileRefused(f"refusing {path!r}: {why}") from None
            raise OSError(e.errno, e.strerror, path) from None
        finally:
            os.close(root)

    @staticmethod
    def _regular(fd: int, path: str) -> os.stat_result:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"refusing {path!r}: {_WHY[errno.ENXIO]}")
        return info

    def _make_dirs(self, path: str, parent: str) -> None:
        """Create `parent`'s missing components one at a time, each under the same rules."""
        done = ""
        for part in parent.split("/"):
            if part in ("", "."):
                continue
            done = f"{done}/{part}" if done else part
            try:
                os.close(self._open(path, os.O_PATH | os.O_DIRECTORY, rel=done))
            except FileNotFoundError:
                head, name = os.path.split(done)
                fd = self._open(path, os.O_PATH | os.O_DIRECTORY, rel=head or ".")
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                finally:
                    os.close(fd)
