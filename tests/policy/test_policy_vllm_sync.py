"""Weight sync into vLLM, in-process and behind `vllm serve`: after `load_weights`, vLLM
decodes greedily exactly what transformers decodes with the same new weights.

Each test borrows a session engine or server and puts the original weights back
afterwards (itself a second sync, checked the same way), so the other vLLM tests see the
model they expect.
"""

from __future__ import annotations

import copy

import pytest
import torch
from policy_helpers import RemoteStandIn, prompt

from treegym.policy import PolicyError, SamplingParams, make_policy

GREEDY = SamplingParams(temperature=0, max_tokens=12)


def _greedy(policy, prompts: list[list[int]]) -> list[list[int]]:
    return [g.ids for g in policy.generate([policy.start(p) for p in prompts], GREEDY)]


def _check_sync(policy, hf) -> None:
    """Perturb `hf`'s weights, load them into `policy`, compare greedy outputs, restore."""
    tok = hf.tokenizer
    prompts = [prompt(tok, n, salt=f"{n} ") for n in (20, 150)]
    before = _greedy(policy, prompts)  # also fills the prefix cache under old weights
    original = copy.deepcopy(hf.model.state_dict())
    try:
        with torch.no_grad():
            torch.manual_seed(1)
            for param in hf.model.parameters():
                param.add_(0.5 * param.std() * torch.randn_like(param))
        expected = _greedy(hf, prompts)
        assert expected != before, "the perturbation should change the greedy output"
        policy.load_weights(hf.model.named_parameters())
        assert _greedy(policy, prompts) == expected
    finally:
        hf.model.load_state_dict(original)
        policy.load_weights(hf.model.named_parameters())
    assert _greedy(policy, prompts) == before == _greedy(hf, prompts)


def test_greedy_matches_hf_after_sync(vllm_policy, hf) -> None:
    _check_sync(vllm_policy, hf)


def test_a_server_takes_new_weights_through_its_routes(vllm_server, tiny, hf) -> None:
    """`vllm serve` in dev mode: /collective_rpc reload_weights, then /reset_prefix_cache."""
    policy = make_policy(f"openai:{vllm_server}#{tiny}")
    try:
        _check_sync(policy, hf)
        stage = policy._stage.path
        assert stage is not None and (stage / "model.safetensors").exists()
    finally:
        policy.close()
    assert not stage.exists(), "close() leaves no staged weights behind"


def test_a_server_without_the_route_is_named(tiny, hf) -> None:
    """A hosted API has no weight routes: the error names the URL requested and the fix."""
    with RemoteStandIn(str(tiny)) as server:
        policy = make_policy(f"openai:{server.url}#{tiny}")
        try:
            hint = "no weight-update route.*VLLM_SERVER_DEV_MODE=1"
            with pytest.raises(PolicyError, match=hint) as caught:
                policy.load_weights(hf.model.named_parameters())
        finally:
            policy.close()
    assert f"POST {server.url}/collective_rpc was refused with 404" in str(caught.value)


def test_training_through_a_server_keeps_it_in_sync(vllm_server, tiny, hf, tmp_path) -> None:
    """`train()` with an `openai:` policy: the learner starts from the served checkpoint,
    and after the run the server decodes what the trained weights decode."""
    from treegym.train import TrainConfig, train

    spec = f"openai:{vllm_server}#{tiny}"
    config = TrainConfig(
        env="treegym/Maze-v0", env_kwargs={"size": 2, "max_turns": 2}, policy=spec,
        tasks_per_step=2, rollout={"mode": "chain", "n": 2}, max_new_tokens=8, steps=1,
        warm_start={"steps": 1, "episodes": 2, "lr": 1e-2}, out=tmp_path / "run",
    )
    policy = make_policy(spec)
    prompts = [prompt(hf.tokenizer, 40)]
    try:
        before = _greedy(policy, prompts)
        history = train(config)
        assert history[0]["logprob_gap"] < 1e-3  # batch 0 was sampled with the learner's weights
        trained = make_policy(f"hf:{config.out / 'policy'}")
        try:
            expected = _greedy(trained, prompts)
        finally:
            trained.close()
        assert expected != before, "the warm start should change the greedy output"
        assert _greedy(policy, prompts) == expected
    finally:
        policy.load_weights(hf.model.named_parameters())  # the session server's model again
        policy.close()
