"""`treegym train --compare`: chain and tree, each with several seeds, from one shared
start to one token budget; each trained policy evaluated on tasks training never saw;
the table and the plot recomputed here from the runs' own files."""

import json
import math
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

import torch  # noqa: E402
from helpers import TREEGYM
from safetensors.torch import load_file  # noqa: E402
from train_helpers import small  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from treegym.cli import app  # noqa: E402
from treegym.records import Tree, read_jsonl  # noqa: E402
from treegym.train import ConfigError, compare, load_config  # noqa: E402
from treegym.train.compare_report import RunResult, curve, summarise  # noqa: E402
from treegym.train.metrics import StepMetrics  # noqa: E402

# Runs of 1 task a step, one turn of at most 4 tokens: a few seconds each on CPU.
FAST = {"env_kwargs": {"size": 2, "max_turns": 1}, "tasks_per_step": 1, "max_new_tokens": 4,
        "steps": 10, "checkpoint_every": 10, "stop_after_flat_steps": None}
STEP = {"policy_version": 0, "zero_variance_groups": 0.0, "pg_loss": 0.0, "clip_frac": 0.0,
        "entropy": 1.0, "ratio": 1.0, "tokens": 1, "row_tokens": 1, "grad_norm": 0.0,
        "learn_seconds": 0.0, "rollout_seconds": 0.0, "step_seconds": 0.0}


def run(seed: int, points: list[tuple[int, float]], gap: float = 0.0) -> RunResult:
    history = [StepMetrics(step=i, generated=g, reward=r, leaves=4, logprob_gap=gap, **STEP)
               for i, (g, r) in enumerate(points)]
    return RunResult(mode="chain", seed=seed, out=Path(f"seed-{seed}"), wall_seconds=2.0 + seed,
                     history=history)


def test_table_and_curve_across_seeds_by_hand():
    a = run(0, [(10, 0.0), (20, 0.5), (30, 1.0)])
    b = run(1, [(15, 0.2), (25, 0.4), (35, 0.6)], gap=0.01)
    row = summarise({"chain": [a, b]}, env="e", token_budget=30, eval_episodes=0,
                    eval_k=1).modes["chain"]
    # final: the steps at >= 27 tokens (1.0 and 0.6); half budget: both at 15 tokens
    assert row.final_reward.mean == pytest.approx(0.8)
    assert row.final_reward.se == pytest.approx(0.2)  # stdev 0.283 / sqrt(2)
    assert row.half_budget_reward.mean == pytest.approx(0.225)  # 0.25 and 0.2
    assert row.leaves_per_step == 4 and row.tokens_per_leaf == pytest.approx(65 / 24)
    assert (row.wall_seconds_per_run, row.wall_seconds_total) == (2.5, 5.0)
    assert row.max_logprob_gap == 0.01 and row.eval_mean_reward is None
    grid, mean, low, high = curve([a.history, b.history])  # no extrapolation past 15..30
    assert grid.tolist() == [15, 20, 25, 30]
    assert np.allclose(low, [0.2, 0.3, 0.4, 0.5]) and np.allclose(high, [0.25, 0.5, 0.75, 1.0])
    assert np.allclose(mean, (low + high) / 2)
    alone = summarise({"chain": [a]}, env="e", token_budget=30, eval_episodes=0, eval_k=1)
    assert alone.modes["chain"].final_reward.se is None  # one seed: unknown, not 0
    assert str(alone.modes["chain"].final_reward) == "1.000 ± n/a"


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_seeds_share_one_warm_start_and_evaluate_on_unseen_tasks(tmp_path, monkeypatch):
    # a per-turn reward drawn from the task's seed: rewards vary across tasks and seeds
    # although the untrained tiny model never solves a maze
    monkeypatch.setattr("treegym.envs.maze.MazeEnv.turn_reward",
                        lambda env: float(env.np_random.random() < 0.5))
    budget = 16  # a step or two a run: a chain step generates up to 16 tokens, a tree step 24
    config = small(tmp_path, **FAST, token_budget=budget, warm_start={"steps": 1, "episodes": 1},
                   compare={"seeds": 2, "eval_episodes": 2})
    records: list[dict] = []
    report = compare(config, log=records.append)
    out = config.out
    runs = {(mode, seed): out / mode / f"seed-{seed}" for mode in ("chain", "tree")
            for seed in (0, 1)}
    assert sorted(out.glob("*/seed-*")) == sorted(runs.values())
    assert [r.get("phase") for r in records].count("warm_start") == 1
    warm = load_file(str(out / "warm_start/model.safetensors"))
    start = json.loads((out / "warm_start/eval.json").read_text())
    assert start["policy"] == f"hf:{out / 'warm_start'}" and start["tasks"] == 2
    assert report.start_eval is not None and report.start_eval.mean_reward == start["mean_reward"]
    assert "| start |" in (out / "compare.md").read_text()
    trained_on: dict[tuple[str, int], set[int]] = {}
    for key, folder in runs.items():
        start = load_file(str(folder / "checkpoints/step-000000/model.safetensors"))
        assert warm.keys() & start.keys() and all(
            torch.equal(warm[k], start[k]) for k in warm.keys() & start.keys()), key
        trained_on[key] = {tree.seed for tree in read_jsonl(folder / "trees.jsonl", Tree)}
        steps = metrics(folder)
        assert steps[-1]["generated"] >= budget > (steps[-2]["generated"] if steps[1:] else 0)
    assert trained_on["chain", 0].isdisjoint(trained_on["chain", 1])  # seed + i, new tasks
    assert len({r["reward"] for r in records if "reward" in r}) > 1
    for mode, row in report.modes.items():
        histories = [metrics(runs[mode, seed]) for seed in (0, 1)]
        finals = [statistics.mean([r["reward"] for r in h if r["generated"] >= 0.9 * budget])
                  for h in histories]
        halves = [np.interp(budget / 2, [r["generated"] for r in h], [r["reward"] for r in h])
                  for h in histories]
        assert row.seeds == 2 and [r.seed for r in row.runs] == [0, 1]
        assert row.final_reward.mean == pytest.approx(statistics.mean(finals))
        assert row.final_reward.se == pytest.approx(statistics.stdev(finals) / math.sqrt(2))
        assert row.half_budget_reward.mean == pytest.approx(statistics.mean(halves))
        steps = [r for h in histories for r in h]
        assert row.leaves_per_step == pytest.approx(statistics.mean(r["leaves"] for r in steps))
        assert row.max_logprob_gap == max(r["logprob_gap"] for r in steps)
        evals = [json.loads((runs[mode, s] / "eval.json").read_text()) for s in (0, 1)]
        assert evals[0]["policy"] == f"hf:{runs[mode, 0] / 'policy'}" and evals[0]["tasks"] == 2
        assert row.eval_mean_reward.mean == pytest.approx(
            statistics.mean(e["mean_reward"] for e in evals))
    held_out = {tree.seed for folder in runs.values()
                for tree in read_jsonl(folder / "eval.jsonl", Tree)}
    assert held_out == {0, 1} and held_out.isdisjoint(set().union(*trained_on.values()))
    assert json.loads((out / "compare.json").read_text()) == report.model_dump(mode="json")
    assert "| chain | 2 |" in (out / "compare.md").read_text()
    assert (out / "reward_vs_tokens.png").stat().st_size > 0


def test_cli_compare_with_seeds_prints_the_report(tmp_path):
    config = tmp_path / "compare.yaml"
    config.write_text(json.dumps({
        "env": "treegym/Maze-v0", "policy": "tiny", **FAST, "token_budget": 8,
        "out": str(tmp_path / "run"),
    }))
    done = subprocess.run([TREEGYM, "train", str(config), "--compare", "--seeds", "2",
                           "--eval-episodes", "1", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()  # with --json, the report alone
    report = json.loads(line)
    assert {m: row["seeds"] for m, row in report["modes"].items()} == {"chain": 2, "tree": 2}
    assert all(row["final_reward"]["se"] is not None and row["eval_mean_reward"]
               for row in report["modes"].values())
    assert (tmp_path / "run/tree/seed-1/eval.json").exists()


def test_bad_seeds_and_compare_keys_are_one_clear_error(tmp_path):
    done = subprocess.run([TREEGYM, "train", "any.yaml", "--compare", "--seeds", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Invalid value for '--seeds'" in done.stderr
    path = tmp_path / "typo.yaml"
    path.write_text("env: treegym/Maze-v0\ncompare: {seed: 2}\n")
    with pytest.raises(ConfigError, match="compare.seed: unknown key 'seed'; did you mean seeds"):
        load_config(path)
    path.write_text("env: treegym/Maze-v0\n")
    result = CliRunner().invoke(app, ["train", str(path), "--seeds", "2"])
    assert result.exit_code == 2 and "--seeds needs --compare" in result.output
    result = CliRunner().invoke(app, ["train", str(path), "--compare", "--resume"])
    assert result.exit_code == 2 and "--compare can't resume" in result.output
    with pytest.raises(ConfigError, match="--compare needs token_budget"):
        compare(small(tmp_path))
    with pytest.raises(ConfigError, match="eval_episodes needs seed >= 0"):
        compare(small(tmp_path, token_budget=8, seed=-1, compare={"eval_episodes": 1}))
