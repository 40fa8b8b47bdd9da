"""A short CPU learning run on Maze-v0 (configs/maze-tiny.yaml, fixed seeds): GRPO after a
supervised warm start raises the mean reward by more than the task-to-task noise.

The unit is a task's mean reward over its chains (chains of one task are correlated, so
they are not independent samples). The first three batches (the first sampled with the
warm-started weights alone) are compared with the last three, and the rise must clear
two standard errors of the difference: a one-sided bound at about 98%.
"""

import statistics
from pathlib import Path

import pytest
from train_helpers import task_means

pytest.importorskip("transformers")
pytest.importorskip("treegym.rollout")

from treegym.records import Tree, read_jsonl  # noqa: E402
from treegym.train import load_config, train  # noqa: E402

CONFIG = Path(__file__).parents[2] / "configs" / "maze-tiny.yaml"
STEPS = 8
WINDOW = 3


# A negative result, kept as one: with the packages of requirements.lock (a fresh resolve
# on 2026-12-01) the rise no longer clears two standard errors. Reward per step was
# [0.5, 0.604, 0.667, 0.646, 0.542, 0.542, 0.625, 0.562] (rise -0.014, 2 SE 0.168); lr
# 2.5e-5 gave rise -0.035 (2 SE 0.169) and 6 tasks per step rise +0.066 (2 SE 0.117).
# Strict: the day it passes again, this marker must go. docs/results.md has the figures.
@pytest.mark.xfail(strict=True, reason="GRPO on the 2x2 maze (tiny, 8 steps) does not raise "
                   "the reward beyond the noise under the locked packages; see docs/results.md")
@pytest.mark.timeout(900)
def test_grpo_raises_maze_reward(tmp_path):
    config = load_config(CONFIG, steps=STEPS, out=tmp_path / "run", checkpoint_every=1)
    history = train(config)
    print("reward per step:", [round(r["reward"], 3) for r in history])
    batches = [list(read_jsonl(config.out / f"checkpoints/step-{s:06d}/batch.jsonl", Tree))
               for s in range(STEPS)]
    before = [m for batch in batches[:WINDOW] for m in task_means(batch)]
    after = [m for batch in batches[-WINDOW:] for m in task_means(batch)]
    rise = statistics.mean(after) - statistics.mean(before)
    se = sum(statistics.variance(x) / len(x) for x in (before, after)) ** 0.5
    assert rise > 2 * se, (rise, se, before, after)
