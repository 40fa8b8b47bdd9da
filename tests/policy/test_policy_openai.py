"""The HTTP backend against a real `vllm serve` on loopback, and its failure modes
(those a real server can't be made to show come from `RemoteStandIn`)."""

from __future__ import annotations

import socket

import pytest
from policy_helpers import RemoteStandIn, prompt

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


# retries and timeouts kept small, so each failure mode takes well under a second
FAST = dict(max_retries=2, backoff=0.01)


def test_server_errors_are_retried(tiny) -> None:
    with RemoteStandIn(str(tiny), failures=[503, 503]) as server:
        policy = make_policy(f"openai:{server.url}#{tiny}", **FAST)
        try:
            ctx = policy.start([1, 2, 3])
            [gen] = policy.generate([ctx], SamplingParams(max_tokens=1))
        finally:
            policy.close()
    assert server.completions == 3
    assert gen.ids == [5] and ctx.ids == [1, 2, 3, 5]


def test_lasting_server_errors_are_named(tiny) -> None:
    with RemoteStandIn(str(tiny), failures=[500] * 3) as server:
        policy = make_policy(f"openai:{server.url}#{tiny}", **FAST)
        try:
            expected = rf"POST {server.url}/v1/completions failed after 3 tries: server error 500"
            with pytest.raises(PolicyError, match=expected):
                policy.generate([policy.start([1, 2, 3])], SamplingParams(max_tokens=1))
        finally:
            policy.close()
    assert server.completions == 3


def test_a_slow_server_times_out(tiny) -> None:
    with RemoteStandIn(str(tiny), delay=1.0) as server:
        policy = make_policy(f"openai:{server.url}#{tiny}", timeout=0.2, **FAST)
        try:
            with pytest.raises(PolicyError, match=r"failed after 3 tries: timed out after 0.2s"):
                policy.generate([policy.start([1, 2, 3])], SamplingParams(max_tokens=1))
        finally:
            policy.close()
    assert server.completions == 3


def test_the_same_context_twice_is_refused(tiny) -> None:
    with RemoteStandIn(str(tiny)) as server:
        policy = make_policy(f"openai:{server.url}#{tiny}")
        try:
            ctx = policy.start([1, 2, 3])
            with pytest.raises(PolicyError, match="same context twice"):
                policy.generate([ctx, ctx], SamplingParams(max_tokens=1))
        finally:
            policy.close()
    assert server.completions == 0 and ctx.ids == [1, 2, 3]
