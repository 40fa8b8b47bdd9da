"""`RolloutWorker`: what runs inside one Ray actor.

A worker owns its policy (a model on its own device, or routes to shared servers) and
the envs and sandboxes of the tasks it is given, so trees never cross machines: only
finished tree records travel back. It rolls out with the in-process `collect`, whose
seeds come from each branch's place in its tree, so a task gives the same trees on any
worker, in any batch, and again after a retry.

A trainer keeps its workers for the whole run and sends each new set of weights through
Ray's object store (`set_weights`); every tree then records the weights' version.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..policy import Policy, PolicyError, SamplingParams
from ..policy.routing import make_worker_policy
from ..rollout import RolloutResult, Sampler, collect

if TYPE_CHECKING:
    import torch


class RolloutJob(BaseModel):
    """What a worker keeps for every batch it rolls out; sent once per worker."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    env_id: str
    policy: str | Callable[[], Policy] = Field(
        description="A policy SPEC (or comma-separated openai: endpoints), or a function "
        "that builds the policy inside the worker."
    )
    sampler: Sampler
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    policy_name: str | None = None
    max_branches: int = Field(32, ge=1, description="Live branches per worker.")


class RolloutWorker:
    """One rollout worker; `driver.py` runs it as a Ray actor."""

    def __init__(self, job: RolloutJob, rank: int = 0) -> None:
        self.job = job
        self.policy = (job.policy() if callable(job.policy)
                       else make_worker_policy(job.policy, rank))
        self.version: int | None = None

    def pid(self) -> int:
        """The worker's process id; asking for it also waits until the policy is built."""
        return os.getpid()

    def rollout(self, task_indices: list[int], seed: int,
                params: SamplingParams) -> RolloutResult:
        """Every tree of these tasks, with what they cost on this worker."""
        job = self.job
        return collect(
            job.env_id, self.policy, job.sampler, task_indices, seed=seed, params=params,
            env_kwargs=job.env_kwargs, policy_name=job.policy_name,
            policy_version=self.version, max_branches=job.max_branches,
        )

    def set_weights(self, weights: dict[str, torch.Tensor] | None, version: int) -> None:
        """Roll out with `weights` (HF names) from now on; later trees record `version`.
        None: the driver already sent them to the shared servers this worker routes to."""
        if weights is None:
            self.version = version
            return
        load = getattr(self.policy, "load_weights", None)
        if load is None:
            raise PolicyError(
                f"the {self.policy.backend} policy cannot take new weights; train with tiny, "
                "hf:PATH, vllm:PATH or openai: endpoints"
            )
        load(weights.items())
        self.version = version

    def close(self) -> None:
        self.policy.close()
