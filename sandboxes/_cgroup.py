"""A memory and pids cgroup around one local sandbox tree, where this process may make one.

Per-process rlimits cap each process's address space, but not their sum: 60 processes
of 1 GiB each would take a 24 GiB host down. A cgroup caps the whole tree (its
processes and its in-memory layer store) at `memory_mb`, so a memory bomb spread over
many processes meets the kernel's OOM killer inside the tree, not on the host.

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


class TreeCgroup:
    """The cgroup directories (one for v2, memory and pids for v1) of one tree."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    @classmethod
    def create(cls, memory_mb: int, max_processes: int) -> TreeCgroup | None:
        """Make the tree's cgroup under this process's own, or None where that is not
        allowed here."""
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        limits = {"memory": memory_mb << 20, "pids": max_processes}
        try:
            _sweep()
            if (ROOT / "cgroup.controllers").exists():
                return cls._create_v2(name, limits)
            return cls._create_v1(name, limits)
        except OSError:
            return None

    @classmethod
    def _create_v2(cls, name: str, limits: dict[str, int]) -> TreeCgroup | None:
        parent = ROOT / _own_path("")
        if not {"memory", "pids"} <= set((parent / "cgroup.subtree_control").read_text().split()):
            return None
        group = parent / name
        group.mkdir()
        made = cls([group])
        try:
            (group / "memory.max").write_text(str(limits["memory"]))
            (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(limits["pids"]))
        except OSError:
            made.remove()
            raise
        return made

    @classmethod
    def _create_v1(cls, name: str, limits: dict[str, int]) -> TreeCgroup | None:
        made = cls([])
        try:
            for controller, knob in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max")):
                group = ROOT / controller / _own_path(controller) / name
                group.mkdir()
                made.dirs.append(group)
                (group / knob).write_text(str(limits[controller]))
        except OSError:
            made.remove()
            raise
        return made

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
        ROOT / c / _own_path(c) for c in ("memory", "pids") if (ROOT / c).is_dir()]
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
