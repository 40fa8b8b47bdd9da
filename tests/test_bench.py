"""`treegym bench … --json` report the figures (values not judged), with a progress bar
on stderr and the JSON as stdout's last line."""

from __future__ import annotations

import json
import os

import pytest
from test_cli import treegym

LOCAL_KEYS = {"local_fork_p50_ms", "local_fork_p90_ms", "local_fork_p99_ms",
              "local_resume_p50_ms", "fork_pss_mib", "workspace_files", "interpreter_rss_mib"}
DOCKER_KEYS = {"docker_fork_p50_ms", "docker_fork_p90_ms", "docker_resume_p50_ms",
               "docker_commit_fork_p50_ms", "fresh_container_p50_ms",
               "speedup_vs_fresh_container"}


def _docker_up() -> bool:
    from treegym.sandboxes.docker_image import docker_client

    try:
        docker_client()
    except Exception:  # noqa: BLE001 - any failure means "no engine" here
        return False
    return True


def test_bench_sandbox_json() -> None:
    with_docker = os.environ.get("TREEGYM_REQUIRE_DOCKER") == "1" or _docker_up()
    args = ["bench", "sandbox", "--json", "--repeats", "5", "--files", "20", "--interp-mb", "5"]
    out = treegym(*args, *([] if with_docker else ["--no-docker"]))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert LOCAL_KEYS <= set(report) and DOCKER_KEYS <= set(report)
    assert report["workspace_files"] >= 20 and report["local_fork_p50_ms"] > 0
    assert "local forks" in out.stderr and "5/5" in out.stderr  # the timed forks
    if not with_docker:
        pytest.skip("no Docker engine: only the local figures were measured")
    assert report["docker_skipped"] is None
    assert report["fresh_container_p50_ms"] > 0 and report["speedup_vs_fresh_container"] > 0
    assert report["docker_fork_copies_memory"] is True


def test_bench_policy_json() -> None:
    pytest.importorskip("transformers", reason="bench policy needs the torch extra")
    out = treegym("bench", "policy", "--json", "--n", "2", "--prefix", "64")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    keys = {"fork_s", "recompute_s", "speedup", "prefill_tokens_fork",
            "prefill_tokens_recompute", "backend"}
    assert keys <= set(report) and report["backend"] == "hf"
    assert "fork vs re-prefill, decode" in out.stderr and "7/7" in out.stderr
    assert report["decode_tokens_per_s"] > 0 and report["decode_batch"] == 2
    # what the ledger counted: branches prefilled only their own tokens
    assert report["prefill_tokens_recompute"] - report["prefill_tokens_fork"] == 2 * 64


def test_bench_learner_json() -> None:
    pytest.importorskip("transformers", reason="bench learner needs the torch extra")
    out = treegym("bench", "learner", "--json", "--tasks", "1")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    keys = {"packed_step_s", "per_leaf_step_s", "speedup", "packed_peak_mb",
            "per_leaf_peak_mb", "max_abs_logprob_diff", "max_rel_grad_diff"}
    assert keys <= set(report)
    assert "training steps" in out.stderr and "4/4" in out.stderr
    assert report["max_abs_logprob_diff"] <= 1e-5 and report["max_rel_grad_diff"] <= 1e-4


def test_bench_rollout_json() -> None:
    pytest.importorskip("transformers", reason="bench rollout needs the torch extra")
    out = treegym("bench", "rollout", "--json", "--tasks", "1", "--m", "1", "--max-tokens", "8",
                  "--max-turns", "3", "--env-opt", "max_turns=2")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["shape"]["env_kwargs"] == {"max_turns": 2}  # --env-opt wins
    assert report["leaves_chain"] == report["leaves_tree"] == 3  # equal leaves, both modes
    assert report["regenerated_tokens"] == 0 and report["reexecuted_tool_calls"] == 0
    assert report["token_ratio"] > 1
    assert "chain trees" in out.stderr and "3/3" in out.stderr
    assert "tree trees" in out.stderr and "1/1" in out.stderr


def test_bench_serve_json() -> None:
    out = treegym("bench", "serve", "--json", "--repeats", "5")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["env_id"] == "treegym/PyCalc-v0" and report["turn"] == 5
    assert report["repeats"] == 5
    for name in ("fork", "reset_replay", "step"):
        p50, p90 = report[f"{name}_p50_ms"], report[f"{name}_p90_ms"]
        assert 0 < p50 <= p90, name
    assert report["speedup_vs_reset_replay"] > 0  # reported, not judged
    assert "serve forks and replays" in out.stderr and "8/8" in out.stderr  # 5 + 3 warm-up
