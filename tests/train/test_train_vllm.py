"""`train()` end to end with a vLLM rollout policy: every batch is sampled with the weights
the learner has, so `Actor.sync()` really reloads the engine after each update.

The learner's `logprob_gap` (mean |logp - behaviour logp| at the first epoch) is the
witness: with synced weights only fp32 numerics separate vLLM from transformers; a batch
sampled with stale weights is scored by a model one large update away. To show that the
bound separates the two, the run skips its last sync on purpose, and that step's gap must
be far above it.

Skips with a reason when vllm can't be imported, unless TREEGYM_REQUIRE_VLLM=1, when it
fails instead (as the vLLM policy tests do).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("treegym.rollout")

from helpers import require_vllm  # noqa: E402
from train_helpers import small  # noqa: E402

from treegym.learn import ESTIMATORS  # noqa: E402
from treegym.learn.advantages import Advantages  # noqa: E402
from treegym.records import Tree  # noqa: E402
from treegym.train import train  # noqa: E402
from treegym.train.actor import Actor  # noqa: E402

# The engine options of the vLLM policy tests: fp32 like the learner, small and quick to start.
SPEC = "vllm:tiny?dtype=fp32&block_size=32&enforce_eager=true&max_model_len=2048&cpu_kv_cache_gib=1"
STEPS = 4  # steps 0-2 are rolled out after real syncs; the sync before step 3 is skipped
STALE_STEP = STEPS - 1
# Measured on CPU: about 1e-5 at every synced step, about 5 when the sync is skipped.
GAP_BOUND = 1e-3


def alternating(trees: list[Tree]) -> Advantages:
    """±1 per tree. The tiny model can't finish a move in 8 tokens, so every reward is 0 and
    GRPO's advantages would be 0 too: no update, and nothing for a sync to carry."""
    return [{leaf: 1.0 if i % 2 == 0 else -1.0 for leaf in tree.kept}
            for i, tree in enumerate(trees)]


def test_each_batch_is_sampled_with_the_learners_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_vllm()
    monkeypatch.setitem(ESTIMATORS, "grpo", alternating)
    sync = Actor.sync
    versions: list[int] = []

    def sync_but_the_last(actor: Actor) -> None:
        """Sync as usual, except before the stale step: its batch keeps the old weights."""
        versions.append(len(versions))
        if versions[-1] != STALE_STEP:
            sync(actor)

    monkeypatch.setattr(Actor, "sync", sync_but_the_last)
    # lr 1e-2 moves the weights far in one step; at temperature 1 vLLM's raw log-probs are
    # those of the distribution it sampled from, so the learner's are comparable.
    config = small(tmp_path, policy=SPEC, steps=STEPS, temperature=1.0, optim={"lr": 1e-2})
    history = train(config)
    gaps = [record["logprob_gap"] for record in history]
    print("logprob_gap per step:", gaps)
    assert [record["step"] for record in history] == list(range(STEPS))
    assert all(record["grad_norm"] > 0 for record in history), "the weights must move"
    assert all(gap < GAP_BOUND for gap in gaps[:STALE_STEP]), gaps
    assert gaps[STALE_STEP] > 100 * GAP_BOUND, gaps
