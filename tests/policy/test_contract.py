"""The Policy contract, one suite for every backend: hf, vllm, openai (against `vllm
serve`), menu and routed. `BasePolicy.generate` writes the checks once; this checks that
every backend keeps them, and keeps the bookkeeping a sampler relies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from treegym.policy import (
    MenuPolicy,
    Policy,
    PolicyError,
    RoutedPolicy,
    SamplingParams,
    load_tokenizer,
    make_policy,
)

KINDS = ["menu", "routed", "hf", "vllm", "openai"]
PARAMS = SamplingParams(max_tokens=4, seed=0)


@pytest.fixture(params=KINDS)
def policy(request: pytest.FixtureRequest, tiny: Path) -> Iterator[Policy]:
    kind = request.param
    if kind in ("menu", "routed"):
        tokenizer = load_tokenizer(tiny)
        made: Policy = (MenuPolicy(tokenizer, ["hello", "bye"]) if kind == "menu" else
                        RoutedPolicy([MenuPolicy(tokenizer, ["hello", "bye"]) for _ in range(2)]))
        yield made
        made.close()
    elif kind == "hf":
        yield request.getfixturevalue("hf")
    elif kind == "vllm":
        yield request.getfixturevalue("vllm_policy")
    else:
        remote = make_policy(f"openai:{request.getfixturevalue('vllm_server')}#{tiny}")
        yield remote
        remote.close()


def test_generate_appends_what_it_returns_and_counts_it(policy: Policy) -> None:
    ctx = policy.start([1, 2, 3])
    before = policy.ledger.generated
    (gen,) = policy.generate([ctx], PARAMS)
    assert 1 <= len(gen.ids) <= PARAMS.max_tokens and len(gen.logprobs) == len(gen.ids)
    assert ctx.ids == [1, 2, 3, *gen.ids]
    assert policy.ledger.generated - before == len(gen.ids)
    assert gen.finish_reason in ("stop", "length")
    policy.release(ctx)


def test_a_fork_goes_on_alone(policy: Policy) -> None:
    parent = policy.start([4, 5])
    child = policy.fork(parent)
    policy.generate([child], PARAMS)
    assert parent.ids == [4, 5] and len(child.ids) > 2
    for ctx in (parent, child):
        policy.release(ctx)


def test_the_batch_is_checked_before_any_work(policy: Policy) -> None:
    live = policy.start([1, 2])
    gone = policy.start([1, 2])
    policy.release(gone)
    with pytest.raises(PolicyError, match="released"):
        policy.generate([live, gone], PARAMS)
    with pytest.raises(PolicyError, match="same context twice"):
        policy.generate([live, live], PARAMS)
    with pytest.raises(PolicyError, match="seeds for 1 contexts"):
        policy.generate([live], PARAMS, seeds=[1, 2])
    assert live.ids == [1, 2]  # nothing was decoded for a refused batch
    assert policy.generate([], PARAMS) == []
    policy.release(live)


def test_prompts_are_checked(policy: Policy) -> None:
    with pytest.raises(PolicyError, match="at least one prompt id"):
        policy.start([])
    with pytest.raises(PolicyError, match="outside the vocabulary"):
        policy.start([1, 10**9])


def test_one_seed_gives_one_draw_whoever_shares_the_batch(policy: Policy) -> None:
    params = SamplingParams(max_tokens=4, temperature=1.0)
    alone = policy.start([7, 8])
    (solo,) = policy.generate([alone], params, seeds=[11])
    pair = [policy.start([7, 8]), policy.start([9, 9, 9])]
    first, _ = policy.generate(pair, params, seeds=[11, 12])
    assert first.ids == solo.ids
    for ctx in (alone, *pair):
        policy.release(ctx)
