"""Trees written before typed origins (commit 06d6ec7's `branch` field) still train."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from treegym import Tree, read_jsonl
from treegym.learn import Learner, OptimConfig
from treegym.learn.advantages import grpo

OLD_FORMAT = Path(__file__).parents[1] / "data" / "trees-branch-field.jsonl"


def test_old_format_trees_take_an_rl_and_a_supervised_step(model: torch.nn.Module) -> None:
    trees = list(read_jsonl(OLD_FORMAT, Tree))
    assert not any(n.sampled for n in trees[-1].nodes)  # the demonstration is scripted
    advantages = grpo(trees)  # one task: the scripted success sets the sampled leaves below 0
    assert any(a < 0.0 for adv in advantages[:2] for a in adv.values())
    trained = copy.deepcopy(model)
    learner = Learner(trained, optim=OptimConfig(lr=1e-3))
    metrics = learner.step(trees, advantages)
    assert metrics["tokens"] > 0 and torch.isfinite(torch.tensor(metrics["pg_loss"]))
    # the file's menu policy recorded log(1/6) per choice, nothing like this model's
    # log-probs, so every ratio is clipped: the step runs, and PPO rightly moves nothing
    assert metrics["clip_frac"] == pytest.approx(1.0)
    sft = learner.sft_step(trees)  # the warm start's step, which the scripted turns feed
    assert torch.isfinite(torch.tensor(sft["nll"])) and sft["grad_norm"] > 0
    moved = [(a - b).abs().max().item() for a, b in
             zip(trained.parameters(), model.parameters(), strict=True)]
    assert max(moved) > 0
