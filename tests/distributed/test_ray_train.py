"""`train` with rollouts on Ray workers: the in-process run again in sync mode, rollouts one
update behind in one-step-off mode, exact resume, and `treegym train --ray` surviving
Ctrl-C with no Ray process left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ray_helpers import ray_processes, wait_until_gone
from test_cli import TREEGYM, treegym

from treegym import Tree, read_jsonl
from treegym.distributed import RayConfig
from treegym.distributed.digest import tree_digest
from treegym.train import ConfigError, TrainConfig, load_config, train

pytest.importorskip("ray")
pytest.importorskip("transformers", reason="training the tiny model needs the torch extra")

SAME = ("reward", "generated", "leaves", "policy_version")


def small(tmp_path: Path, name: str, **over: object) -> TrainConfig:
    return TrainConfig(**{
        "env": "treegym/Maze-v0", "env_kwargs": {"size": 2, "max_turns": 2},
        "policy": "tiny", "tasks_per_step": 2, "rollout": {"mode": "chain", "n": 2},
        "max_new_tokens": 8, "steps": 2, "optim": {"lr": 1e-2}, "out": tmp_path / name,
        "stop_after_flat_steps": None,  # the random tiny model never reaches the goal
        **over,
    })


def batch_digests(run: Path, step: int) -> list[str]:
    """The content of the batch that the checkpoint after step `step - 1` holds."""
    batch = read_jsonl(run / f"checkpoints/step-{step:06d}/batch.jsonl", Tree)
    return [tree_digest(t) for t in batch]


def test_sync_mode_on_ray_trains_exactly_as_in_process(ray_local, tmp_path: Path) -> None:
    here = train(small(tmp_path, "here"))
    there = train(small(tmp_path, "there", ray=RayConfig(workers=2)))
    assert [[r[k] for k in SAME] for r in there] == [[r[k] for k in SAME] for r in here]
    assert [r["policy_version"] for r in there] == [0, 1]
    for mine, theirs in zip(here, there, strict=True):
        assert theirs["pg_loss"] == pytest.approx(mine["pg_loss"], abs=1e-5)
    # batch 2 was rolled out by the workers with weights that saw two updates
    assert batch_digests(tmp_path / "there", 2) == batch_digests(tmp_path / "here", 2)


def test_one_step_off_rolls_out_behind_and_resumes_exactly(ray_local, tmp_path: Path) -> None:
    config = small(tmp_path, "async", steps=3, weight_sync="one-step-off",
                   ray=RayConfig(workers=2))
    history = train(config)
    # batch s + 1 is collected during update s, with the weights from before it
    assert [r["policy_version"] for r in history] == [0, 0, 1]
    (config.out / "checkpoints/latest").write_text("step-000002")
    resumed = train(config, resume=True)
    assert [r["step"] for r in resumed] == [2]
    for key in ("reward", "pg_loss", "grad_norm", "generated", "policy_version"):
        assert resumed[0][key] == history[2][key], key


def test_one_step_off_needs_ray(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one-step-off' needs ray"):
        small(tmp_path, "x", weight_sync="one-step-off")
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: treegym/Maze-v0\nray: {workers: 0}\n")
    with pytest.raises(ConfigError, match="ray.workers"):
        load_config(bad)


def test_cli_train_on_ray_survives_ctrl_c_and_resumes(tmp_path: Path) -> None:
    """Ctrl-C mid-run (one-step-off, so a rollout is in flight during the update): exit
    130, whole checkpoints, no Ray process left; `--resume` then carries on."""
    run = tmp_path / "run"

    def config(steps: int) -> Path:
        path = tmp_path / f"train-{steps}.yaml"
        path.write_text(
            "env: treegym/Maze-v0\nenv_kwargs: {size: 2, max_turns: 2}\npolicy: tiny\n"
            "tasks_per_step: 2\nrollout: {mode: chain, n: 2}\nmax_new_tokens: 8\n"
            f"steps: {steps}\nweight_sync: one-step-off\nout: {run}\nstop_after_flat_steps: null\n"
        )
        return path

    before = ray_processes()
    args = ["train", str(config(1000)), "--ray", "local", "--workers", "1"]
    # A user's terminal delivers SIGINT with its default action; a background CI shell may
    # have left it ignored, and children inherit that, so restore the default in the child.
    proc = subprocess.Popen([TREEGYM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and (
            not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "treegym: interrupted"
    assert wait_until_gone(before) == {}, "Ray processes outlived the interrupted run"
    last = int((run / "checkpoints/latest").read_text().removeprefix("step-"))
    assert last >= 1
    resumed = treegym("train", str(config(last + 1)), "--resume", "--ray", "local",
                      "--workers", "1", "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["step"] == last and summary["policy_version"] == last - 1
    assert wait_until_gone(before) == {}, "Ray processes outlived the resumed run"
    without_ray = treegym("train", str(config(last + 1)), "--json")
    assert without_ray.returncode != 0
    assert "one-step-off' needs ray" in without_ray.stderr
