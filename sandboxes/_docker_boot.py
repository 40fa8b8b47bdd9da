"""How a commit-backend container starts: the options that harden it, and the worker it is
sent over its `docker exec` stream (the modules it imports, then the worker itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._docker_owned import LABEL, OWNER_LABEL, owner_id
from .base import SandboxLimits
from .docker_image import WORKDIR

WORKER_SOURCE = Path(__file__).with_name("_docker_worker.py").read_bytes()
# The stdlib-only modules the worker imports, in dependency order: the syscalls, the process
# table and the file operations every backend shares, the disk cap, the agent's side.
MODULES = {name: Path(__file__).with_name(f"{name}.py").read_bytes()
           for name in ("_linux", "_procs", "_files", "_wire", "_docker_disk",
                        "_docker_agent", "_docker_python")}
# Reads one line from stdin and runs it; that line reads each module's source into a
# module of that name, then reads and runs the worker's source.
BOOTSTRAP = "import sys; exec(sys.stdin.buffer.readline())"
LOADER = (
    "".join(f"m = sys.modules[{name!r}] = type(sys)({name!r}); "
            f"exec(compile(sys.stdin.buffer.read({len(source)}), 'treegym-{name}', 'exec'), "
            "m.__dict__); " for name, source in MODULES.items())
    + f"exec(compile(sys.stdin.buffer.read({len(WORKER_SOURCE)}), 'treegym-worker', 'exec'), "
    "{'__name__': '__main__'})\n"
).encode() + b"".join(MODULES.values()) + WORKER_SOURCE
# Container memory beyond the per-process cap, for the worker and a few concurrent tools.
HEADROOM_MB = 256
# Processes that are not the agent's: docker-init, sleep, the worker and its disk watcher,
# the interpreter.
HOUSEKEEPING_PIDS = 8
# The worker is root with only these; everything the agent runs has no capabilities at all.
# DAC_READ_SEARCH lets the disk cap measure directories the agent made unreadable.
WORKER_CAPS = ["SETUID", "SETGID", "KILL", "DAC_READ_SEARCH"]


def run_options(lim: SandboxLimits) -> dict[str, Any]:
    """The container's hardening: no network, no capabilities but the worker's, no new
    privileges, and memory, process and file-size caps."""
    import docker.types

    memory = f"{lim.memory_mb + HEADROOM_MB}m"
    fsize = lim.max_file_mb << 20
    return {
        "command": ["sleep", "infinity"],
        "detach": True,
        "init": True,  # docker-init reaps orphans, which would otherwise fill pids_limit
        "user": "root",
        "working_dir": WORKDIR,
        "hostname": "sandbox",
        "network_mode": "bridge" if lim.network else "none",
        "cap_drop": ["ALL"],
        "cap_add": WORKER_CAPS,
        "security_opt": ["no-new-privileges"],
        "mem_limit": memory,
        "memswap_limit": memory,
        "pids_limit": lim.max_processes + HOUSEKEEPING_PIDS,
        # RLIMIT_NPROC is per uid across the whole host, so every sandbox's agent would
        # share one count; pids_limit is the per-container cap. CPU time and address
        # space are set per call and per process by the worker.
        "ulimits": [
            docker.types.Ulimit(name="fsize", soft=fsize, hard=fsize),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ],
        "labels": {LABEL: "1", OWNER_LABEL: owner_id()},
    }

