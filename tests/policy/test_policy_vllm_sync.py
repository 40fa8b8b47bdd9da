"""Weight sync into the in-process vLLM engine: after `load_weights`, vLLM decodes greedily
exactly what transformers decodes with the same new weights.

It borrows the session's engine and puts the original weights back afterwards (itself a
second sync, checked the same way), so the other vLLM tests see the model they expect.
"""

from __future__ import annotations

import copy

import torch
from policy_helpers import prompt

from treegym.policy import SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=12)


def _greedy(policy, prompts: list[list[int]]) -> list[list[int]]:
    return [g.ids for g in policy.generate([policy.start(p) for p in prompts], GREEDY)]


def test_greedy_matches_hf_after_sync(vllm_policy, hf) -> None:
    tok = hf.tokenizer
    prompts = [prompt(tok, n, salt=f"{n} ") for n in (20, 150)]
    before = _greedy(vllm_policy, prompts)  # also fills the prefix cache under old weights
    original = copy.deepcopy(hf.model.state_dict())
    try:
        with torch.no_grad():
            torch.manual_seed(1)
            for param in hf.model.parameters():
                param.add_(0.5 * param.std() * torch.randn_like(param))
        expected = _greedy(hf, prompts)
        assert expected != before, "the perturbation should change the greedy output"
        vllm_policy.load_weights(hf.model.named_parameters())
        assert _greedy(vllm_policy, prompts) == expected
    finally:
        hf.model.load_state_dict(original)
        vllm_policy.load_weights(hf.model.named_parameters())
    assert _greedy(vllm_policy, prompts) == before == _greedy(hf, prompts)

