"""`bench_learner` and `treegym bench learner`: the report's keys and how they relate, the
named shapes, --tokens-per-turn; figures exact where they must be, speed never judged."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import TREEGYM

from treegym.learn.bench import bench_learner, bench_shape
from treegym.learn.packing import pack
from treegym.learn.synthetic import SHAPES, TreeShape

pytest.importorskip("transformers")

KEYS = {"packed_step_s", "per_leaf_step_s", "speedup", "ideal_speedup", "fraction_of_ideal",
        "packed_tokens", "per_leaf_tokens", "packed_peak_mb", "per_leaf_peak_mb",
        "max_abs_logprob_diff", "max_rel_grad_diff"}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """One torch thread in each spawned side: these tests check figures, not speed, and on
    a busy machine two threads a side are several times slower than one."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def packed_tokens(shape: TreeShape, tasks: int) -> int:
    return sum(len(seq) for seq in pack(shape.trees(tasks, vocab=512)))


def check(report: dict) -> None:
    assert KEYS <= set(report)
    assert report["ideal_speedup"] == pytest.approx(
        report["per_leaf_tokens"] / report["packed_tokens"], abs=1e-3)
    assert report["fraction_of_ideal"] == pytest.approx(
        report["speedup"] / report["ideal_speedup"], rel=1e-2)
    assert report["packed_peak_mb"] > 0 and report["per_leaf_peak_mb"] > 0
    assert report["max_abs_logprob_diff"] <= 1e-5 and report["max_rel_grad_diff"] <= 1e-4


def test_bench_learner_reports_its_keys_and_exactness():
    shape = TreeShape(m=2, n=1, l=1, k=None, turns=2, prompt_tokens=16, action_tokens=4,
                      obs_tokens=4)
    out = bench_learner(shape, tasks=1, repeats=1, device="cpu")
    check(out)
    assert out["packed_tokens"] == packed_tokens(shape, 1) < out["per_leaf_tokens"]
    assert out["batch"].startswith("1 tasks x 2 trees x 2 leaves")


def test_deep_shape_has_thirteen_leaves_a_tree():
    deep = SHAPES["deep"]
    assert (deep.m, deep.n, deep.l, deep.leaves) == (1, 4, 3, 13)
    assert {len(tree.kept) for tree in deep.trees(2)} == {13}
    assert {len(tree.kept) for tree in SHAPES["paper"].trees(2)} == {3}


def test_tokens_per_turn_scales_packed_tokens():
    short, long = bench_shape("paper", 16), bench_shape("paper", 64)
    assert long.action_tokens == 64 and bench_shape("paper") == SHAPES["paper"]
    assert packed_tokens(long, 2) > 2 * packed_tokens(short, 2)


def test_unknown_shape_or_policy_is_named():
    with pytest.raises(ValueError, match="unknown bench shape 'wide'; use one of: paper, deep"):
        bench_shape("wide")
    with pytest.raises(ValueError, match="unknown bench policy 'gpt9'"):
        bench_learner(policy="gpt9")


def treegym(*args: str) -> subprocess.CompletedProcess[str]:
    assert TREEGYM, "the treegym console script is not installed next to this python"
    return subprocess.run([TREEGYM, *args], capture_output=True, text=True, timeout=300)


def test_cli_deep_shape_json():
    out = treegym("bench", "learner", "--json", "--shape", "deep", "--tokens-per-turn", "16",
                  "--tasks", "1")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    check(report)
    assert report["shape"] == "deep" and report["policy"] == "tiny"
    assert report["packed_tokens"] == packed_tokens(bench_shape("deep", 16), 1)


def test_out_of_memory_side_is_reported_not_fatal():
    """A step that cannot fit reports the allocator's error for its side and no figures."""
    shape = TreeShape(m=1, n=1, l=1, k=None, turns=2, prompt_tokens=8, action_tokens=4096,
                      obs_tokens=4)  # 8.2k packed tokens: a 256 MiB fp32 dense mask
    out = bench_learner(shape, tasks=1, repeats=1, device="cpu", attention="dense",
                        headroom_mb=128)
    assert "memory" in out["packed_error"].lower(), out
    assert "packed_peak_mb" not in out and "speedup" not in out
    assert out["attention"] == "dense" and out["packed_tokens"] == packed_tokens(shape, 1)


def test_cli_bad_shape_is_a_usage_error():
    out = treegym("bench", "learner", "--shape", "wide")
    assert out.returncode == 2 and "unknown bench shape 'wide'" in out.stderr
    assert "Traceback" not in out.stderr
    out = treegym("bench", "learner", "--attention", "flash")
    assert out.returncode == 2 and "unknown attention 'flash'" in out.stderr
    out = treegym("bench", "learner", "--alive-paths", "0.5")
    assert out.returncode == 2 and "--alive-paths" in out.stderr
