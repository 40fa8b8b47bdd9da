"""The commit backend's disk and inode cap, enforced inside the container; stdlib only.

Docker can cap a container's writable layer only on overlay2 over xfs with project quotas
(`storage_opt`), so the root worker enforces `disk_mb` and `max_files` itself: a process
measures every directory the agent can write on the root filesystem (its files' sizes,
sparse or not, since a commit writes them out in full, and their count) and, once the
branch is over a cap, kills every agent process and latches the branch over-cap; the worker
then refuses its calls, writes and forks. The walk runs every `POLL` seconds while the disk's
free space falls, and at once when its free space or free inodes (statvfs, cheap) fall by
more than the headroom left. statvfs is polled every `TICK` while the disk is still, and
every `RUSH` while it changes, so a fill is stopped within about one `RUSH` plus one walk
plus the watcher's scheduling delay. Measured on a 2-CPU VM against a 48 MiB cap: a python
loop writing 8 MiB files passed it by up to 24 MiB with a 20 ms poll, and by 0-22 MiB
(mostly under 8) with `RUSH` (14 runs); a shell `dd` fill by 1-4 MiB (was 3-13).

The agent owns everything it measures, so nothing is trusted: the walk goes through
directory fds with O_NOFOLLOW (no symlink or path-length tricks), counts a hard-linked
inode once, and treats a tree it cannot measure as over the cap. The worker holds
DAC_READ_SEARCH for it, so a mode-000 directory hides nothing.

The docker worker receives this file's source before its own (LOADER in _docker_boot.py)
and imports it as `_docker_disk`.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time

import _procs

POLL = 0.2  # seconds between full walks while the disk fills
IDLE = 2.0  # seconds between full walks while it does not
TICK = 0.02  # seconds between statvfs checks while the disk is still
RUSH = 0.002  # seconds between them while it changes: 500 cheap syscalls a second, at most
_RACES = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def writable_roots(uid: int, start: str = "/") -> list[str]:
    """The directories on `start`'s filesystem that `uid` can create files in: measured
    whole, since anything it writes lands beneath one of them."""
    dev = os.lstat(start).st_dev
    roots: list[str] = []
    todo = [start]
    while todo:
        path = todo.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_dev != dev or not stat.S_ISDIR(st.st_mode):
            continue
        mode = st.st_mode
        owner = st.st_uid == uid and mode & stat.S_IWUSR
        if owner or (st.st_gid == uid and mode & stat.S_IWGRP) or mode & stat.S_IWOTH:
            roots.append(path)
            continue
        try:
            todo += [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
        except OSError:
            pass
    return sorted(roots)


def usage(roots: list[str], max_bytes: int, max_files: int) -> tuple[int, int]:
    """Bytes and entries under `roots`; stops early once past either cap."""
    total = files = 0
    seen: set[tuple[int, int]] = set()
    stack: list[int] = []
    try:
        for root in roots:
            try:
                stack.append(os.open(root, _DIR_FLAGS))
            except FileNotFoundError:
                continue
            while stack:
                fd = stack.pop()
                try:
                    with os.scandir(fd) as entries:
                        for entry in entries:
                            try:
                                st = entry.stat(follow_symlinks=False)
                            except FileNotFoundError:
                                continue
                            files += 1
                            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                                if (st.st_dev, st.st_ino) in seen:
                                    continue
                                seen.add((st.st_dev, st.st_ino))
                            total += max(st.st_blocks * 512, st.st_size
                                         if stat.S_ISREG(st.st_mode) else 0)
                            if total > max_bytes or files > max_files:
                                return total, files
                            if stat.S_ISDIR(st.st_mode):
                                try:
                                    stack.append(os.open(entry.name, _DIR_FLAGS, dir_fd=fd))
                                except OSError as e:  # gone or replaced: the next walk sees it
                                    if e.errno not in _RACES:
                                        raise
                finally:
                    os.close(fd)
    finally:
        for fd in stack:
            os.close(fd)
    return total, files


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` in this pid namespace, until none is left."""
    _procs.kill_until_gone(lambda: _procs.owned_by(uid))


class DiskCap:
    """The cap on the agent's files. `check()` measures now; a watcher process (forked
    before the worker starts threads or agent processes, so it is root and single-threaded)
    measures in between, kills the agent's processes past a cap and reports the reason on a
    pipe. `over` is the latched reason and `limit` the cap's name ("disk" or "files")."""

    def __init__(self, uid: int, disk_mb: int, max_files: int) -> None:
        self.uid, self.disk_mb, self.max_files = uid, disk_mb, max_files
        self.max_bytes = disk_mb << 20
        self.roots = writable_roots(uid)
        self.over: str | None = None
        self.limit: str | None = None
        self.used = self.files = 0
        self.measure()
        self.pipe, w = os.pipe()
        parent = os.getpid()
        self.watcher = os.fork()
        if self.watcher == 0:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.close(self.pipe)
                self.watch(parent)
                if self.over:
                    os.write(w, f"{self.limit}\n{self.over}".encode()[:4000])
            finally:
                os._exit(0)
        os.close(w)
        os.set_blocking(self.pipe, False)

    def check(self, since: tuple[int, int] | None = None) -> str | None:
        """The latched reason if the branch is over a cap, else None. Measures now, unless
        `since` (`free()` when a call began) shows that nothing was written since then."""
        if self.over is None:
            try:
                message = os.read(self.pipe, 4096).decode()
            except BlockingIOError:
                message = ""
            if message:
                self.limit, _, self.over = message.partition("\n")
            elif since is None or max(a - b for a, b in zip(since, free(), strict=True)) > 0:
                self.measure()
            if self.over:
                stop(self.watcher)
        return self.over

    def measure(self) -> None:
        """Measure the agent's files; past a cap, kill its processes and latch the reason."""
        reason = None
        try:
            used, files = usage(self.roots, self.max_bytes, self.max_files)
        except OSError as e:  # fail closed: what cannot be measured cannot be committed
            self.limit = "disk"
            reason = (f"the branch's files could not be measured ({e}), so it takes no more "
                      "calls, writes or forks; fork an earlier branch instead")
        else:
            self.used, self.files = used, files
            if used > self.max_bytes or files > self.max_files:
                self.limit = "disk" if used > self.max_bytes else "files"
        if self.limit is None:
            return
        kill_uid(self.uid)
        if reason is None:
            try:  # what is left once they are dead, for the message (the cap stopped the walk)
                self.used, self.files = usage(self.roots, 8 * self.max_bytes, 8 * self.max_files)
            except OSError:
                pass
            reason = self.describe(*self.field())
        self.over = reason

    def field(self) -> tuple[str, int]:
        return ("disk_mb", self.disk_mb) if self.limit == "disk" else ("max_files", self.max_files)

    def describe(self, field: str, cap: int) -> str:
        return (f"the branch wrote {self.used / 2**20:.1f} MiB in {self.files} files under "
                f"{', '.join(self.roots)}, over {field}={cap}; its processes were killed and "
                "it takes no more calls, writes or forks. Fork an earlier branch instead, or "
                f"open the sandbox with a larger cap (e.g. {field}={2 * cap})")

    def watch(self, parent: int) -> None:
        """Walk at once when statvfs says more was written than fits, else every POLL s
        while the disk's free space falls, and every IDLE s when it does not (a sparse file
        grows without taking space, and a fork measures anyway); never more than a third
        of the time, so a branch with many files does not spend a core on being measured."""
        last = time.monotonic()
        base, took = free(), 0.0
        now = previous = base
        while self.over is None and os.getppid() == parent:
            time.sleep(TICK if now == previous else RUSH)
            previous, now = now, free()
            written = base[0] - now[0], base[1] - now[1]
            due = max(POLL if max(written) > 0 else IDLE, 2 * took)
            if (time.monotonic() - last >= due or written[0] > self.max_bytes - self.used
                    or written[1] > self.max_files - self.files):
                last, base = time.monotonic(), free()
                self.measure()
                took = time.monotonic() - last


def stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def free() -> tuple[int, int]:
    """Free bytes and inodes of the filesystem under the container's writable layer."""
    st = os.statvfs("/")
    return st.f_bfree * st.f_frsize, st.f_ffree
