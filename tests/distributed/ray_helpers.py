"""Ray test helpers and fixtures: a local cluster by address, a ray.init one, leak checks.

`ray_local` is `ray.init(num_cpus=2)` in this process; `start_head` is `ray start --head`
on loopback with free ports, with or without token authentication, joined by address.
`ray_processes` lets a test check that nothing of Ray outlived a run.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from treegym.sandboxes._procs import table

RAY = shutil.which("ray", path=str(Path(sys.executable).parent))
_RAY_PROCESS = re.compile(
    r"raylet|gcs_server|ray::|default_worker\.py|log_monitor\.py|ray/dashboard|"
    r"runtime_env/agent|ray_client_server|ray/_private/monitor\.py"
)


def ray_processes() -> dict[int, str]:
    """Live Ray processes on this machine (pid -> command line)."""
    found = {}
    for pid, proc in table().items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.alive and _RAY_PROCESS.search(cmd):
            found[pid] = cmd
    return found


def wait_until_gone(before: dict[int, str], seconds: float = 20.0) -> dict[int, str]:
    """The Ray processes not in `before` still alive after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        left = {p: c for p, c in ray_processes().items() if p not in before}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def stop_ray() -> subprocess.CompletedProcess[str]:
    assert RAY, "the ray command is not installed next to this python"
    return subprocess.run([RAY, "stop"], capture_output=True, text=True, timeout=120)


AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a client process with HOME=`home` and only `extra` of Ray's auth
    variables, so what it finds is what the test put there. The tiny model stays cached."""
    from treegym.policy.cache import default_cache_dir

    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    return env | {"HOME": str(home), "TREEGYM_CACHE": str(default_cache_dir())} | extra


@dataclass(frozen=True)
class RayHead:
    address: str
    before: dict[int, str]  # the Ray processes that were running before it started
    home: Path  # the HOME `ray start` ran with; a token, if any, is in home/.ray/auth_token
    token: str | None


@contextmanager
def start_head(home: Path, *, token: bool) -> Iterator[RayHead]:
    """`ray start --head` on 127.0.0.1 with free ports, stopped after.

    With `token`, a token is generated first where Ray keeps it (~/.ray/auth_token of
    `home`), and `ray start` then turns token authentication on, as it does on a machine
    where any local `ray.init()` ran before; without, `home` holds none and it stays off.
    """
    assert RAY, "the ray command is not installed next to this python"
    home.mkdir(parents=True, exist_ok=True)
    env = client_env(home)
    secret = None
    if token:
        made = subprocess.run([RAY, "get-auth-token", "--generate"], capture_output=True,
                              text=True, env=env, timeout=120)
        assert made.returncode == 0, made.stderr
        secret = (home / ".ray" / "auth_token").read_text().strip()
    before = ray_processes()
    port = free_port()
    ports = {
        "--port": port, "--node-manager-port": free_port(),
        "--object-manager-port": free_port(), "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(), "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    args = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", "--num-cpus=2",
            "--include-dashboard=false", "--disable-usage-stats",
            *(f"{flag}={value}" for flag, value in ports.items())]
    started = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield RayHead(f"127.0.0.1:{port}", before, home, secret)
    finally:
        stop_ray()
