"""Policy specs, the tiny checkpoint, the bench, and the errors users can hit first."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
from transformers import AutoConfig

from treegym.policy import PolicyError, init_tiny, make_policy
from treegym.policy.bench import BRANCH_TOKENS, bench_policy


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gpt5", "unknown policy spec"),
        ("hf:", "unknown policy spec"),
        ("torch:/x", "unknown policy spec"),
        ("hf:/no/such/model", "no model directory at /no/such/model"),
        ("vllm:/no/such/model", "no model directory"),
        ("openai:http://127.0.0.1:1", "write openai:URL#MODEL"),
        ("hf:tiny?dtype=fp8", "dtype"),
        ("hf:tiny?colour=red", "colour"),
        ("hf:tiny?dtype", "key=value"),
    ],
)
def test_bad_specs_fail_clearly(tiny: Path, spec: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        make_policy(spec)


def test_tiny_spec_and_options(tiny: Path) -> None:
    policy = make_policy("tiny")
    assert policy.backend == "hf"
    assert Path(policy.model.name_or_path) == tiny
    assert str(make_policy("hf:tiny?dtype=bf16").model.dtype) == "torch.bfloat16"


def test_init_tiny_is_deterministic(tiny: Path, tmp_path: Path) -> None:
    again = init_tiny(tmp_path / "tiny")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert filecmp.cmp(tiny / name, again / name, shallow=False), name
    config = AutoConfig.from_pretrained(again)
    assert config.model_type == "llama"


def test_bench_policy_counts(tiny: Path) -> None:
    result = bench_policy(n=8, prefix=512, spec="tiny", repeats=1)
    assert set(result) >= {
        "fork_s", "recompute_s", "speedup", "prefill_tokens_fork",
        "prefill_tokens_recompute", "backend",
    }  # fmt: skip
    assert result["backend"] == "hf"
    assert result["prefill_tokens_fork"] == 8 * BRANCH_TOKENS
    assert result["prefill_tokens_recompute"] == 8 * (512 + BRANCH_TOKENS)
    assert result["fork_s"] > 0 and result["recompute_s"] > 0
    # forked branches hold one trunk plus their own few ids; recomputed ones hold 8 trunks
    assert result["kv_mib_fork"] * 4 < result["kv_mib_recompute"]
