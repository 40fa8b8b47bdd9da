"""The HTTP backend against a real `vllm serve` on loopback, and its failure modes."""

from __future__ import annotations

import socket

import pytest
from policy_helpers import prompt

from treegym.policy import PolicyError, SamplingParams, make_policy
from treegym.policy.openai_http import OpenAIPolicy

GREEDY = SamplingParams(temperature=0, max_tokens=12)


@pytest.fixture(scope="module")
def remote(vllm_server: str, tiny):
    policy = make_policy(f"openai:{vllm_server}#{tiny}")
    yield policy
    policy.close()


def test_tokens_match_in_process_vllm(remote, vllm_policy) -> None:
    tok = remote.tokenizer
    trunk = prompt(tok, 120)
    results = {}
    for policy in (vllm_policy, remote):
        root = policy.start(trunk)
        policy.generate([root], GREEDY)
        branches = [policy.fork(root) for _ in range(3)]
        for i, branch in enumerate(branches):
            policy.extend(branch, prompt(tok, 4 + i, f"{i} "))
        gens = policy.generate([root, *branches, policy.start(prompt(tok, 9, "y"))], GREEDY)
        results[policy.backend] = gens
    for local, http in zip(results["vllm"], results["openai"], strict=True):
        assert http.ids == local.ids
        assert http.finish_reason == local.finish_reason
        assert http.logprobs == pytest.approx(local.logprobs, abs=1e-4)
        assert http.entropies == pytest.approx(local.entropies, abs=1e-3)


def test_server_reports_cached_prefix(remote) -> None:
    root = remote.start(prompt(remote.tokenizer, 260, "cache "))
    remote.generate([root], SamplingParams(temperature=0, max_tokens=3))
    branch = remote.fork(root)
    remote.extend(branch, [5, 6, 7])
    before = remote.ledger.model_copy()
    length = len(branch)
    remote.generate([branch], SamplingParams(temperature=0, max_tokens=3))
    assert remote.ledger.cached - before.cached >= length - 2 * 32


def test_many_contexts_in_flight(remote) -> None:
    ctxs = [remote.start(prompt(remote.tokenizer, 20 + i, f"{i}")) for i in range(12)]
    gens = remote.generate(ctxs, SamplingParams(temperature=0.8, max_tokens=5, seed=3))
    assert [len(c) for c in ctxs] == [20 + i + len(g.ids) for i, g in enumerate(gens)]


def test_client_error_is_clear(remote, vllm_server: str, tiny) -> None:
    ctx = remote.start([1, 2, 3])
    with pytest.raises(PolicyError, match="refused with 400"):
        remote.generate([ctx], SamplingParams(max_tokens=100_000))
    with pytest.raises(PolicyError, match="does not serve 'nope'"):
        OpenAIPolicy(vllm_server, "nope", tokenizer=str(tiny))


def test_unreachable_server(tiny) -> None:
    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PolicyError, match=r"failed after 2 tries: cannot connect.*running"):
        make_policy(f"openai:http://127.0.0.1:{port}#{tiny}", max_retries=1, backoff=0.01)


def test_needs_a_local_tokenizer() -> None:
    with pytest.raises(PolicyError, match="needs a local tokenizer"):
        make_policy("openai:http://127.0.0.1:9#some-remote-model")
