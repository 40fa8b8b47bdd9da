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

pytest.importorskip("transformers")
pytest.importorskip("treegym.rollout")

from treegym.records import Tree, read_jsonl  # noqa: E402
from treegym.train import load_config, train  # noqa: E402

CONFIG = Path(__file__).parents[2] / "configs" / "maze-tiny.yaml"
STEPS = 8
WINDOW = 3


def task_means(batch: list[Tree]) -> list[float]:
    rewards: dict[int, list[float]] = {}
    for tree in batch:
        rewards.setdefault(tree.task_index, []).extend(tree.reward(leaf) for leaf in tree.kept)
    return [statistics.mean(r) for r in rewards.values()]


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
