"""The real model learns: a few GRPO steps on SmolLM2-135M-Instruct raise its reward on an
easy reasoning-gym task (configs/smollm2-learn.yaml) beyond the task-to-task noise.

As in test_learning.py, the unit is a task's mean reward over its chains. The first
batch, sampled with the warm-started weights alone, is compared with the last two, and
the rise must clear two standard errors of the difference.
"""

import statistics
from pathlib import Path

import pytest
from helpers import require_smollm2, user_cache
from train_helpers import task_means

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("reasoning_gym")

from treegym.records import Tree, read_jsonl  # noqa: E402
from treegym.train import load_config, train  # noqa: E402

CONFIG = Path(__file__).parents[2] / "configs" / "smollm2-learn.yaml"


@pytest.mark.timeout(900)
def test_grpo_raises_smollm2_reward_on_chain_sum(tmp_path):
    require_smollm2()
    config = load_config(CONFIG, out=tmp_path / "run")
    with user_cache():
        history = train(config)
    print("reward per step:", [round(r["reward"], 3) for r in history])
    batches = [list(read_jsonl(config.out / f"checkpoints/step-{s:06d}/batch.jsonl", Tree))
               for s in range(config.steps)]
    before = task_means(batches[0])
    after = [m for batch in batches[-2:] for m in task_means(batch)]
    rise = statistics.mean(after) - statistics.mean(before)
    se = sum(statistics.variance(x) / len(x) for x in (before, after)) ** 0.5
    assert rise > 2 * se, (rise, se, before, after)
    python_calls = [sum(bool(n.calls) for t in batch for n in t.nodes) for batch in batches]
    assert python_calls[-1] > python_calls[0], ("the rise comes from using the tool", python_calls)
