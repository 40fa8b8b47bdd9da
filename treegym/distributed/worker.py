"""`RolloutWorker`: what runs inside one Ray actor.

A worker owns its policy (a model on its own device, or routes to shared servers) and
the envs and sandboxes of the tasks it is given, so trees never cross machines: only
finished tree records travel back. It rolls out with the in-process `collect`, whose
seeds come from each branch's place in its tree, so a task gives the same trees on any
worker, in any batch, and again after a retry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..policy import Policy, SamplingParams
from ..rollout import RolloutResult, Sampler, collect
from .routing import make_worker_policy


class RolloutJob(BaseModel):
    """Everything a worker needs to roll out any task of one run; sent once per worker."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    env_id: str
    policy: str | Callable[[], Policy] = Field(
        description="A policy SPEC (or comma-separated openai: endpoints), or a function "
        "that builds the policy inside the worker."
    )
    sampler: Sampler
    seed: int = 0
    params: SamplingParams = Field(default_factory=SamplingParams)
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    policy_name: str | None = None
    max_branches: int = Field(32, ge=1, description="Live branches per worker.")


class RolloutWorker:
    """One rollout worker; `driver.py` runs it as a Ray actor."""

    def __init__(self, job: RolloutJob, rank: int = 0) -> None:
        self.job = job
        self.policy = (job.policy() if callable(job.policy)
                       else make_worker_policy(job.policy, rank))

    def pid(self) -> int:
        """The worker's process id; asking for it also waits until the policy is built."""
        return os.getpid()

    def rollout(self, task_indices: list[int]) -> RolloutResult:
        """Every tree of these tasks, with what they cost on this worker."""
        job = self.job
        return collect(
            job.env_id, self.policy, job.sampler, task_indices, seed=job.seed,
            params=job.params, env_kwargs=job.env_kwargs, policy_name=job.policy_name,
            max_branches=job.max_branches,
        )

    def close(self) -> None:
        self.policy.close()
