"""`register_reasoning_gym`: any reasoning-gym dataset as a treegym env, in one call."""

from __future__ import annotations

from typing import Any

from treegym.registry import register

from . import source

ENTRY_POINT = "treegym.envs.reasoning_gym:ReasoningGymEnv"


def env_id(dataset: str) -> str:
    """The id a dataset is registered under by default: `treegym/RG-<dataset>-v0`."""
    return f"treegym/RG-{dataset}-v0"


def register_reasoning_gym(dataset: str, *, id: str | None = None, **config: Any) -> str:
    """Register `dataset` with `config` as its dataset config, and return the env id.

    The name and config are checked now (this imports reasoning-gym), so a typo fails
    here, with the closest dataset names, rather than in a rollout worker later. Env
    options such as `max_turns` are given to `treegym.make` as usual.
    """
    source.open_dataset(dataset, config, seed=0)
    env = id or env_id(dataset)
    register(env, entry_point=ENTRY_POINT, kwargs={"dataset": dataset, "dataset_config": config})
    return env
