"""`bench signal` on real parts: the tiny model, real envs, the learner's own backward.

Figures are random-model numbers, so the tests check what must hold of any run: shapes,
ranges, finiteness, and that signal is reported as signal and its absence as absence.
"""

import json
import math
import subprocess
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

from helpers import TREEGYM

import treegym  # noqa: E402
from treegym import AgentEnv, Task  # noqa: E402
from treegym.learn.signal import bench_signal  # noqa: E402

EVEN = "testns/EvenLength-v0"


class EvenLengthEnv(AgentEnv):
    """Each turn earns 1 when its action text has an even length: meaningless, but it
    varies with what even an untrained model samples, so groups have spread."""

    description = "Test env whose reward varies with the sampled text."

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        return Task(id=f"even-{int(rng.integers(1000))}", prompt="Write anything.")

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward + float(len(action) % 2 == 0), terminated, truncated, info


treegym.register(EVEN, entry_point=EvenLengthEnv)

SMALL = dict(spec="tiny", tasks=2, repeats=2, reference_factor=2, max_tokens=6, max_turns=2)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def test_mixed_rewards_give_a_nonzero_gradient_and_every_figure():
    report = bench_signal(EVEN, **SMALL)
    assert report.parameter_count > 0 and "MLP" in report.parameters
    assert report.reference_leaves == 2 * 4 * 2
    assert report.reference_nonzero_group_fraction > 0 and report.reference_grad_norm > 0
    assert report.chain.leaves == 2 * 4  # chains per task · tasks
    assert report.tree.leaves == 2 * 2 * (1 + 2 * 1)  # tasks · m · (1 + n·l)
    for mode in (report.chain, report.tree):
        assert mode.generated_tokens > 0
        assert mode.leaves_per_1k_tokens == pytest.approx(
            1000 * mode.leaves / mode.generated_tokens, rel=1e-3)
        assert 0 <= mode.nonzero_group_fraction <= 1
        assert -1 <= mode.cosine_to_reference <= 1
        assert _finite(mode.cosine_std) and mode.cosine_std >= 0
        if mode.zero_signal_batches < 2:
            assert _finite(mode.relative_variance) and mode.relative_variance >= 0
    assert report.tokens_ratio == pytest.approx(
        report.tree.generated_tokens / report.chain.generated_tokens, rel=1e-2)
    figures = report.figures()
    json.dumps(figures)
    assert figures["leaves_tree"] == report.tree.leaves and "chain" not in figures


def test_cli_reports_no_spread_as_zero_signal_in_json():
    """An untrained model never answers chain_sum: every reward is 0, every group flat, so
    the figures that need a direction are null (valid JSON), never NaN."""
    args = ["--tasks", "1", "--repeats", "2", "--reference-factor", "1", "--max-tokens", "4",
            "--max-turns", "1", "--json"]
    done = subprocess.run([TREEGYM, "bench", "signal", *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["leaves_chain"] == 4 and figures["leaves_tree"] == 6
    assert figures["parameters"].startswith("last decoder layer")
    assert figures["reference_grad_norm"] == 0 and figures["tokens_ratio"] > 0
    for mode in ("chain", "tree"):
        assert figures[f"nonzero_group_fraction_{mode}"] == 0
        assert figures[f"zero_signal_batches_{mode}"] == 2
        assert figures[f"cosine_to_reference_{mode}"] is None
        assert figures[f"relative_variance_{mode}"] is None
    assert figures["cosine_ratio"] is None and figures["relative_variance_ratio"] is None
