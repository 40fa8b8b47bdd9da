"""The transformers backend against transformers itself, and its KV reuse by the ledger."""

from __future__ import annotations

import pytest
import torch
from policy_helpers import DEVICE, clean_stop, prompt

from treegym.policy import PolicyError, SamplingParams
from treegym.policy.hf import HFPolicy

GREEDY = SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[])


def reference(hf: HFPolicy, ids: list[int], n: int) -> tuple[list[int], list[float]]:
    """transformers' own greedy generate over the whole prefix, recomputed from scratch."""
    out = hf.model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=False,
        max_new_tokens=n,
        eos_token_id=hf.eos_ids,
        output_logits=True,
        return_dict_in_generate=True,
    )
    new = out.sequences[0, len(ids) :].tolist()
    logprobs = [
        torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.logits, new, strict=True)
    ]
    return new, logprobs


def assert_matches(hf: HFPolicy, gen, ids: list[int]) -> None:
    want, want_lp = reference(hf, ids, len(gen.ids))
    assert gen.ids == want
    assert gen.logprobs == pytest.approx(want_lp, abs=1e-4)


def test_fork_extend_matches_full_recompute(hf: HFPolicy) -> None:
    ids = prompt(hf.tokenizer, 160)
    root = hf.start(ids[:120])
    branch = hf.fork(root)
    hf.extend(branch, ids[120:])
    [gen] = hf.generate([branch], GREEDY)
    assert_matches(hf, gen, ids)
    assert branch.ids == ids + gen.ids
    assert len(gen.entropies) == len(gen.ids) and all(h >= 0 for h in gen.entropies)


def test_siblings_are_isolated(hf: HFPolicy) -> None:
    ids = prompt(hf.tokenizer, 100)
    root = hf.start(ids)
    left, right = hf.fork(root), hf.fork(root)
    hf.extend(left, prompt(hf.tokenizer, 7, salt="LEFT "))
    hf.generate([left], GREEDY)
    hf.extend(right, prompt(hf.tokenizer, 9, salt="right "))
    [right_gen] = hf.generate([right], GREEDY)
    assert_matches(hf, right_gen, ids + prompt(hf.tokenizer, 9, salt="right "))
    [root_gen] = hf.generate([root], GREEDY)  # the root itself is untouched by its branches
    assert_matches(hf, root_gen, ids)


def test_batch_of_different_lengths_matches_each_alone(hf: HFPolicy) -> None:
    prompts = [prompt(hf.tokenizer, n, s) for n, s in [(1, ""), (37, "a"), (90, "b"), (64, "c")]]
    ctxs = [hf.start(p) for p in prompts]
    gens = hf.generate(ctxs, SamplingParams(temperature=0, max_tokens=10))
    for p, ctx, gen in zip(prompts, ctxs, gens, strict=True):
        assert_matches(hf, gen, p)
        assert ctx.ids == p + gen.ids
    # the contexts continue correctly after a batched call that finished rows at different steps
    again = hf.generate(ctxs, GREEDY)
    for p, first, gen in zip(prompts, gens, again, strict=True):
        assert_matches(hf, gen, p + first.ids)


def test_branch_prefills_only_its_new_tokens(hf: HFPolicy) -> None:
    ids = prompt(hf.tokenizer, 200)
    root = hf.start(ids)
    before = hf.ledger.model_copy()
    branches = [hf.fork(root) for _ in range(4)]
    for i, b in enumerate(branches):
        hf.extend(b, prompt(hf.tokenizer, 5, salt=f"{i} "))
    hf.generate(branches, SamplingParams(temperature=0, max_tokens=3, stop_token_ids=[]))
    assert hf.ledger.prefilled - before.prefilled == 4 * 5
    assert hf.ledger.cached - before.cached == 4 * 200
    assert hf.ledger.generated - before.generated == 4 * 3


def test_branches_keep_sharing_the_prefix_in_memory(hf: HFPolicy) -> None:
    """After extending and generating, siblings still hold one copy of the common
    prefix's KV: only what each branch added is its own memory."""
    root = hf.start(prompt(hf.tokenizer, 200))
    branches = [hf.fork(root) for _ in range(4)]
    for i, b in enumerate(branches):
        hf.extend(b, prompt(hf.tokenizer, 5, salt=f"{i} "))
    hf.generate(branches, SamplingParams(temperature=0, max_tokens=3, stop_token_ids=[]))
    prefix = root.state[0][0][0]
    assert all(b.state[0][0][0].data_ptr() == prefix.data_ptr() for b in branches)
    assert hf.kv_bytes([root, *branches]) < 1.2 * hf.kv_bytes([root])


def test_sampling_is_seeded_and_branches_differ(hf: HFPolicy) -> None:
    root = hf.start(prompt(hf.tokenizer, 50))
    params = SamplingParams(temperature=1.0, max_tokens=8, seed=7, stop_token_ids=[])

    def draw() -> list[list[int]]:
        return [g.ids for g in hf.generate([hf.fork(root) for _ in range(4)], params)]

    first = draw()
    assert first == draw()
    assert len({tuple(ids) for ids in first}) > 1


def test_tiny_top_p_is_greedy(hf: HFPolicy) -> None:
    ids = prompt(hf.tokenizer, 40)
    [gen] = hf.generate([hf.start(ids)], SamplingParams(top_p=1e-6, max_tokens=8, seed=1))
    assert_matches(hf, gen, ids)


def test_stop_string_ends_the_turn(hf: HFPolicy) -> None:
    ids = prompt(hf.tokenizer, 30)
    [free] = hf.generate([hf.start(ids)], SamplingParams(temperature=0, max_tokens=12))
    target = clean_stop(hf.tokenizer, free.ids)
    [gen] = hf.generate([hf.start(ids)], GREEDY, stop=[target])
    assert gen.finish_reason == "stop"
    assert target in hf.tokenizer.decode(gen.ids)
    assert gen.ids == free.ids[: len(gen.ids)]
    assert target not in hf.tokenizer.decode(gen.ids[:-1])


def test_eos_stops_with_reason(hf: HFPolicy) -> None:
    ids = prompt(hf.tokenizer, 30)
    [free] = hf.generate([hf.start(ids)], SamplingParams(temperature=0, max_tokens=6))
    forced = free.ids[2]
    [gen] = hf.generate([hf.start(ids)], GREEDY.model_copy(update={"stop_token_ids": [forced]}))
    assert gen.ids == free.ids[:3] and gen.finish_reason == "stop"
    assert free.finish_reason in ("length", "stop")


def test_bf16(tiny) -> None:
    policy = HFPolicy(tiny, dtype="bf16", device=DEVICE)
    assert policy.model.dtype == torch.bfloat16
    ids = prompt(policy.tokenizer, 80)
    root = policy.start(ids[:60])
    branch = policy.fork(root)
    policy.extend(branch, ids[60:])
    gens = policy.generate([branch, root], SamplingParams(temperature=0.7, max_tokens=6, seed=0))
    for gen in gens:
        assert len(gen.ids) == len(gen.logprobs) == len(gen.entropies) > 0
        assert all(lp <= 0 for lp in gen.logprobs)


def test_released_context_is_refused(hf: HFPolicy) -> None:
    ctx = hf.start(prompt(hf.tokenizer, 10))
    hf.release(ctx)
    for use in (
        lambda: hf.extend(ctx, [1]),
        lambda: hf.fork(ctx),
        lambda: hf.generate([ctx], GREEDY),
    ):
        with pytest.raises(PolicyError, match="released"):
            use()


def test_misuse_is_refused(hf: HFPolicy) -> None:
    ctx = hf.start(prompt(hf.tokenizer, 10))
    with pytest.raises(PolicyError, match="same context twice"):
        hf.generate([ctx, ctx], GREEDY)
    with pytest.raises(PolicyError, match="outside the vocabulary"):
        hf.extend(ctx, [10**6])
    with pytest.raises(PolicyError, match="at least one"):
        hf.start([])


def test_load_weights_swaps_the_model_in_place_or_refuses(tiny) -> None:
    """What a Ray worker does with each new set of weights from the trainer."""
    a, b = HFPolicy(tiny, device=DEVICE), HFPolicy(tiny, device=DEVICE)
    try:
        ids = prompt(a.tokenizer, 40)
        before = a.generate([a.start(ids)], GREEDY)[0]
        with torch.no_grad():
            for p in b.model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        moved = b.generate([b.start(ids)], GREEDY)[0]
        assert moved.logprobs != pytest.approx(before.logprobs, abs=1e-3)
        a.load_weights(b.model.named_parameters())
        assert a.generate([a.start(ids)], GREEDY)[0].logprobs == pytest.approx(moved.logprobs,
                                                                               abs=1e-5)
        named = list(b.model.named_parameters())
        kept = {k: v.clone() for k, v in a.model.state_dict().items()}
        with torch.no_grad():
            for _, p in named:
                p.mul_(2)
        with pytest.raises(PolicyError, match="weights missing"):
            a.load_weights(named[1:])
        assert all(torch.equal(kept[k], v) for k, v in a.model.state_dict().items()), \
            "a refused load must leave the model as it was"
        with pytest.raises(PolicyError, match="'nope' is not a weight"):
            a.load_weights([("nope", named[0][1])])
        with pytest.raises(PolicyError, match="has shape"):
            a.load_weights([(named[0][0], named[0][1][:1])])
    finally:
        a.close()
        b.close()
