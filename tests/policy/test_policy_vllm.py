"""The in-process vLLM backend: same greedy tokens as transformers, prefixes from cache."""

from __future__ import annotations

import pytest
from policy_helpers import clean_stop, prompt

from treegym.policy import PolicyError, SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=12)


def test_greedy_tokens_match_hf(vllm_policy, hf) -> None:
    """Same fp32 weights, same trees: fork+extend on both, decoded in one batch each."""
    tok = hf.tokenizer
    trunk = prompt(tok, 150)
    suffixes = [prompt(tok, n, salt=f"{n} ") for n in (1, 7, 40)]
    results = {}
    for policy in (hf, vllm_policy):
        root = policy.start(trunk)
        policy.generate([root], GREEDY)
        branches = [policy.fork(root) for _ in suffixes]
        for branch, suffix in zip(branches, suffixes, strict=True):
            policy.extend(branch, suffix)
        others = [policy.start(prompt(tok, n, "x")) for n in (3, 90)]
        gens = policy.generate([root, *branches, *others], GREEDY)
        results[policy.backend] = [(g.ids, g.logprobs, g.finish_reason) for g in gens]
    for (hf_ids, hf_lp, hf_reason), (v_ids, v_lp, v_reason) in zip(
        results["hf"], results["vllm"], strict=True
    ):
        assert v_ids == hf_ids and v_reason == hf_reason
        assert v_lp == pytest.approx(hf_lp, abs=1e-3)


def test_branches_reuse_the_prefix(vllm_policy) -> None:
    block = vllm_policy.block_size
    root = vllm_policy.start(prompt(vllm_policy.tokenizer, 300, "reuse "))
    vllm_policy.generate([root], SamplingParams(temperature=0, max_tokens=4))
    branches = [vllm_policy.fork(root) for _ in range(4)]
    for i, branch in enumerate(branches):
        vllm_policy.extend(branch, prompt(vllm_policy.tokenizer, 5, f"{i} "))
    for branch in branches:  # one at a time, so the ledger gives each branch's count
        before = vllm_policy.ledger.model_copy()
        length = len(branch)
        vllm_policy.generate([branch], SamplingParams(temperature=0, max_tokens=4))
        cached = vllm_policy.ledger.cached - before.cached
        assert cached >= length - 2 * block
        assert vllm_policy.ledger.prefilled - before.prefilled == length - cached


def test_sampling_is_seeded_and_branches_differ(vllm_policy) -> None:
    root = vllm_policy.start(prompt(vllm_policy.tokenizer, 50))
    params = SamplingParams(temperature=1.0, max_tokens=8, seed=11)

    def draw() -> list[list[int]]:
        return [
            g.ids for g in vllm_policy.generate([vllm_policy.fork(root) for _ in range(3)], params)
        ]

    first = draw()
    assert first == draw()
    assert len({tuple(ids) for ids in first}) > 1


def test_stop_string(vllm_policy, hf) -> None:
    ids = prompt(hf.tokenizer, 30)
    [free] = vllm_policy.generate([vllm_policy.start(ids)], GREEDY)
    target = clean_stop(hf.tokenizer, free.ids)
    [gen] = vllm_policy.generate([vllm_policy.start(ids)], GREEDY, stop=[target])
    assert gen.finish_reason == "stop"
    assert gen.ids == free.ids[: len(gen.ids)]
    [hf_gen] = hf.generate([hf.start(ids)], GREEDY, stop=[target])
    assert hf_gen.ids == gen.ids


def test_misuse_is_refused(vllm_policy) -> None:
    ctx = vllm_policy.start([1, 2, 3])
    with pytest.raises(PolicyError, match="same context twice"):
        vllm_policy.generate([ctx, ctx], GREEDY)
    vllm_policy.release(ctx)
    with pytest.raises(PolicyError, match="released"):
        vllm_policy.generate([ctx], GREEDY)
