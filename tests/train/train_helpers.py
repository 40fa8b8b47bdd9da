"""What several trainer tests share: a run small enough for seconds on CPU, and the
resume check (train, step back one checkpoint, resume, compare)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from treegym.records import Tree
from treegym.train import TrainConfig, train

RESUMED_THE_SAME = ("reward", "pg_loss", "grad_norm", "generated", "entropy")


def small(tmp_path: Path, **over: Any) -> TrainConfig:
    return TrainConfig(**{
        "env": "treegym/Maze-v0", "env_kwargs": {"size": 2, "max_turns": 2},
        "policy": "tiny", "tasks_per_step": 2, "rollout": {"mode": "chain", "n": 2},
        "max_new_tokens": 8, "steps": 2, "out": tmp_path / "run", **over,
    })


def assert_resume_is_exact(config: TrainConfig) -> dict[str, torch.Tensor]:
    """Train `config` (2 steps), resume from the step-1 checkpoint, and check that step 1
    and the step-2 weights come out bit for bit the same; return those weights."""
    history = train(config)
    checkpoints = config.out / "checkpoints"
    weights_after = load_file(str(checkpoints / "step-000002/model.safetensors"))
    (checkpoints / "latest").write_text("step-000001")  # go back one step
    resumed = train(config, resume=True)
    assert [r["step"] for r in resumed] == [1]
    for key in RESUMED_THE_SAME:
        assert resumed[0][key] == history[1][key], key
    again = load_file(str(checkpoints / "step-000002/model.safetensors"))
    assert weights_after.keys() == again.keys()
    assert all(torch.equal(weights_after[k], again[k]) for k in weights_after)
    return again


def task_means(batch: list[Tree]) -> list[float]:
    """Each task's mean reward over its kept leaves: chains of one task are correlated, so
    the task, not the episode, is the unit of the learning tests' standard errors."""
    rewards: dict[int, list[float]] = {}
    for tree in batch:
        rewards.setdefault(tree.task_index, []).extend(tree.reward(leaf) for leaf in tree.kept)
    return [statistics.mean(r) for r in rewards.values()]
