"""A reward that never varies gives GRPO nothing to learn from: each such step warns, and
`stop_after_flat_steps` of them in a row end the run with one line (exit status 3)."""

import json
import logging
import sys
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

import treegym  # noqa: E402
from treegym import AgentEnv, Task  # noqa: E402
from treegym.cli import main  # noqa: E402
from treegym.learn import ESTIMATORS  # noqa: E402
from treegym.learn.advantages import flat_groups  # noqa: E402
from treegym.learn.synthetic import synthetic_trees  # noqa: E402

FLAT = "testns/Flat-v0"


class FlatEnv(AgentEnv):
    """Whatever the agent writes, the episode earns 0."""

    description = "Test env whose reward never varies."

    def make_task(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        return Task(id=f"flat-{int(rng.integers(1000))}", prompt="Say anything.")

    def score(self, answer: str) -> float:
        return 0.0


treegym.register(FLAT, entry_point=FlatEnv)


def test_flat_groups_counts_the_groups_without_spread():
    trees = synthetic_trees(tasks=2, trees=2, leaves=3, prompt_tokens=4, turns=2)
    for tree in trees:
        for node in tree.nodes:
            node.reward = 0.0
    varied = [t for t in trees if t.task_index == 1 and t.tree_index == 1][0]
    for value, leaf in enumerate(varied.kept):
        varied.nodes[leaf].reward = float(value)
    expected = {"grpo": (1, 2), "tree_grpo": (1, 2), "tree_grpo_intra": (3, 4)}
    for name, counts in expected.items():
        assert flat_groups(trees, ESTIMATORS[name](trees), name) == counts, name
    for tree in trees:  # equal again within each task, but not 0: still no spread
        for leaf in tree.kept:
            tree.nodes[leaf].reward = float(tree.task_index)
    assert flat_groups(trees, ESTIMATORS["grpo"](trees), "grpo") == (2, 2)


def test_flat_reward_warns_every_step_then_stops_in_one_line(tmp_path, monkeypatch, capsys,
                                                              caplog):
    out = tmp_path / "run"
    config = tmp_path / "flat.yaml"
    config.write_text(
        f"env: {FLAT}\nenv_kwargs: {{max_turns: 1}}\npolicy: tiny\ntasks_per_step: 1\n"
        f"rollout: {{mode: chain, n: 2}}\nmax_new_tokens: 8\nsteps: 10\n"
        f"stop_after_flat_steps: 2\nout: {out}\n")
    monkeypatch.setattr(sys, "argv", ["treegym", "train", str(config), "--json"])
    with caplog.at_level(logging.WARNING, logger="treegym.train"), \
            pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 3
    lines = capsys.readouterr().err.strip().splitlines()  # transformers' load bar comes first
    errors = [line for line in lines if line.startswith("treegym:")]
    assert errors == lines[-1:] and errors[0].startswith(
        "treegym: error: the reward never varied over 2 steps in a row (steps 0-1, mean "
        "reward 0): every group's episodes got the same reward"), lines
    assert "more samples per group (rollout.n" in errors[0] and "higher temperature" in errors[0]

    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
              and "zero reward variance" in r.getMessage()]
    assert [w.split(":")[0] for w in warned] == ["step 0", "step 1"]
    assert "1 of 1 advantage groups (100%)" in warned[0] and "no learning signal" in warned[0]

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1]  # what was written before the stop stays
    assert all(r["zero_variance_groups"] == 1.0 and r["reward"] == 0.0 for r in records)
    for r in records:
        assert r["learn_seconds"] > 0 and r["rollout_seconds"] > 0
        assert r["step_seconds"] >= r["learn_seconds"] + r["rollout_seconds"]
    assert (out / "checkpoints" / "latest").read_text() == "step-000002"
