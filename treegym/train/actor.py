"""The rollout policy and the module the learner trains, and how the first sees the second.

With `hf` they are one module in-process, so a sync costs nothing: the next `generate`
already uses the new weights (each collection starts fresh contexts, so no KV computed
under old weights is reused). With `vllm` the learner trains an fp32 transformers copy
of the same checkpoint, and `sync` loads its weights into the engine in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError
from ..policy import Policy, make_policy


@dataclass
class Actor:
    policy: Policy  # rolls out
    model: torch.nn.Module  # trained by the learner
    tokenizer: Any
    _learner_policy: Policy | None = None  # owns `model` when it is not `policy`'s

    def sync(self) -> None:
        """Make the rollout policy generate with the learner's current weights."""
        if self._learner_policy is not None:
            self.policy.load_weights(self.model.named_parameters())

    def close(self) -> None:
        self.policy.close()
        if self._learner_policy is not None:
            self._learner_policy.close()


def make_actor(spec: str) -> Actor:
    """The actor for policy spec `spec`: `tiny`, `hf:PATH?...` or `vllm:PATH?...`."""
    policy = make_policy(spec)
    if policy.backend == "hf":
        return Actor(policy, policy.model, policy.tokenizer)
    if policy.backend == "vllm":
        learner = make_policy(f"hf:{policy.path}", dtype="fp32")
        return Actor(policy, learner.model, learner.tokenizer, learner)
    policy.close()
    raise ConfigError(f"policy {spec!r}: the trainer needs weights it can update: "
                      "tiny, hf:PATH or vllm:PATH")
