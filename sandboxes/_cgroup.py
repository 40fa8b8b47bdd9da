"""A memory, pids and CPU cgroup around one local sandbox tree, where this process may make one.

Per-process rlimits cap each process's address space, but not their sum: 60 processes
of 1 GiB each would take a 24 GiB host down. A cgroup caps the whole tree (its
processes and its in-memory layer store) at `memory_mb`, so a memory bomb spread over
many processes meets the kernel's OOM killer inside the tree, not on the host; and its
CPU at `cpus` cores, so code that escapes a call's CPU limit (a process that raised its
own soft limit, a daemon) slows only its own tree. `oom_kills` lets the host say that a
worker that vanished was killed for the tree's memory, not by a crash.

Making a cgroup needs write access to the hierarchy: root, on cgroup v1 (memory and
pids hierarchies) or on cgroup v2 where the parent already delegates both controllers.
Elsewhere (an unprivileged user without systemd delegation) `TreeCgroup.create` returns
None, and the sandbox's capabilities say that memory is capped per process only.

A tree's cgroup is removed when the tree closes. One whose owner was killed (SIGKILL, a
crash) is left empty, and the next `create` on this machine sweeps it, as the docker
backend sweeps containers of dead owners.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "treegym-"
_PERIOD_US = 100_000


class TreeCgroup:
    """The cgroup directories (one for v2, memory and pids for v1) of one tree."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self.cpu = False  # whether the tree's CPU is capped too

    @classmethod
    def create(cls, memory_mb: int, max_processes: int, cpus: float | None) -> TreeCgroup | None:
        """Make the tree's cgroup under this process's own, or None where that is not
        allowed here. The CPU cap is applied where the cpu controller is available."""
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        quota = None if cpus is None else max(1000, int(cpus * _PERIOD_US))
        try:
            _sweep()
            if (ROOT / "cgroup.controllers").exists():
                return cls._create_v2(name, memory_mb << 20, max_processes, quota)
            return cls._create_v1(name, memory_mb << 20, max_processes, quota)
        except OSError:
            return None

    @classmethod
    def _create_v2(cls, name: str, memory: int, pids: int, quota: int | None) -> TreeCgroup | None:
        parent = ROOT / _own_path("")
        controllers = set((parent / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids"} <= controllers:
            return None
        group = parent / name
        group.mkdir()
        made = cls([group])
        try:
            (group / "memory.max").write_text(str(memory))
            (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(pids))
            if quota is not None and "cpu" in controllers:
                (group / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
                made.cpu = True
        except OSError:
            made.remove()
            raise
        return made

    @classmethod
    def _create_v1(cls, name: str, memory: int, pids: int, quota: int | None) -> TreeCgroup | None:
        made = cls([])
        knobs = [("memory", {"memory.limit_in_bytes": memory}), ("pids", {"pids.max": pids})]
        if quota is not None and (ROOT / "cpu").is_dir():
            knobs.append(("cpu", {"cpu.cfs_period_us": _PERIOD_US, "cpu.cfs_quota_us": quota}))
        try:
            for controller, values in knobs:
                group = ROOT / controller / _own_path(controller) / name
                group.mkdir()
                made.dirs.append(group)
                for knob, value in values.items():
                    (group / knob).write_text(str(value))
            made.cpu = quota is not None and (ROOT / "cpu").is_dir()
        except OSError:
            made.remove()
            raise
        return made

    def oom_kills(self) -> int:
        """Processes of the tree the kernel has killed for the cgroup's memory limit."""
        for group in self.dirs:
            for events in ("memory.events", "memory.oom_control"):  # v2, v1
                try:
                    text = (group / events).read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0

    def add(self, pid: int) -> None:
        """Move `pid` in; do it before it forks, so every descendant is inside too."""
        for group in self.dirs:
            (group / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Remove the directories once the tree's processes are gone: killing a pid
        namespace's init ends the rest asynchronously, so wait for them to leave."""
        deadline = time.monotonic() + 10
        for group in self.dirs:
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # still busy: a later sweep takes it once it is empty
                    time.sleep(0.01)


def existing(pid: int | None = None) -> list[str]:
    """Tree cgroups that process `pid` (this one by default) made and that still exist,
    for leak checks."""
    prefix = f"{PREFIX}{pid or os.getpid()}-"
    return sorted(str(d) for d in _trees() if d.name.startswith(prefix))


def _trees() -> list[Path]:
    """Every tree cgroup next to where this process would make one."""
    parents = [ROOT / _own_path("")] if (ROOT / "cgroup.controllers").exists() else [
        ROOT / c / _own_path(c) for c in ("memory", "pids", "cpu") if (ROOT / c).is_dir()]
    return [d for p in parents if p.is_dir() for d in p.iterdir()
            if d.name.startswith(PREFIX) and d.is_dir()]


def _sweep() -> None:
    """Remove the empty cgroups of trees whose owning process is gone."""
    for group in _trees():
        owner = group.name[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            try:
                group.rmdir()
            except OSError:
                pass  # not empty yet, or another process swept it first


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _own_path(controller: str) -> str:
    """This process's cgroup path for `controller` ("" is cgroup v2's unified line)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or (not controller and not names):
            return path.lstrip("/")
    raise OSError(f"this process is in no {controller or 'v2'} cgroup")
