"""treegym's env registry: Gymnasium's own, under the `treegym/` namespace.

Registering through Gymnasium means `gymnasium.make("treegym/X-v0")` works too; this
module adds what Gymnasium lacks for agent tasks: suggestions for a mistyped id, a
summary of each env's tools, and plugins through the `treegym.envs` entry-point group.
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import entry_points
from typing import Any

import gymnasium
from gymnasium.envs.registration import EnvSpec, load_env_creator
from pydantic import BaseModel

from .env import AgentEnv
from .errors import ConfigError, UnknownEnvError, close_matches
from .tools import tools_of

NAMESPACE = "treegym"
ENTRY_POINT_GROUP = "treegym.envs"
_LISTED_IDS = 20  # an unknown-id error lists at most this many registered ids


class EnvInfo(BaseModel):
    """One row of `treegym envs`."""

    id: str
    description: str
    tools: list[str]
    needs_sandbox: bool
    max_turns: int | None


def register(
    id: str, entry_point: Any, kwargs: dict[str, Any] | None = None, **spec_kwargs: Any
) -> None:
    """Register an AgentEnv under `treegym/NAME-vN`; `kwargs` become its default options."""
    if not id.startswith(f"{NAMESPACE}/"):
        raise ConfigError(f"treegym ids live in the '{NAMESPACE}/' namespace: use "
                          f"'{NAMESPACE}/{id.split('/')[-1]}', not {id!r}")
    # AgentEnv enforces reset-before-step and its own turn limit, so Gymnasium's
    # wrappers would only hide `fork()` behind a wrapper that can't forward it.
    spec_kwargs.setdefault("disable_env_checker", True)
    spec_kwargs.setdefault("order_enforce", False)
    gymnasium.register(id=id, entry_point=entry_point, kwargs=dict(kwargs or {}), **spec_kwargs)


def list_envs() -> list[str]:
    """Every registered treegym id, sorted."""
    return sorted(i for i in gymnasium.registry if i.startswith(f"{NAMESPACE}/"))


def spec(id: str) -> EnvSpec:
    """The EnvSpec of a treegym id; an unknown id names the closest registered ones."""
    found = gymnasium.registry.get(id)
    if found is not None and id.startswith(f"{NAMESPACE}/"):
        return found
    known = list_envs()

    def base(env_id: str) -> str:  # "treegym/Maze-v0" -> "maze": versions only add noise
        return re.sub(r"-v\d+$", "", env_id.split("/")[-1]).lower()

    guesses = close_matches(id, known, key=base)
    if guesses:
        hint = f" Did you mean {', '.join(guesses)}?"
    else:  # nothing close: show what exists, so the way out is on the same line
        shown = known[:_LISTED_IDS]
        more = f" and {len(known) - len(shown)} more" if len(known) > len(shown) else ""
        hint = f" Registered: {', '.join(shown) or '(none)'}{more}."
    raise UnknownEnvError(
        f"unknown env id {id!r}.{hint} Run `treegym envs` to list the "
        f"{len(known)} registered ids."
    )


def make(id: str, **kwargs: Any) -> AgentEnv:
    """Build a registered env; `kwargs` override the options it was registered with."""
    env = gymnasium.make(spec(id), **kwargs).unwrapped
    if not isinstance(env, AgentEnv):
        env.close()
        raise ConfigError(f"{id} is registered but is not an AgentEnv ({type(env).__name__})")
    return env


def env_info(id: str) -> EnvInfo:
    """Describe an env from its class and spec, without building it."""
    env_spec = spec(id)
    creator = load_env_creator(env_spec.entry_point) if isinstance(
        env_spec.entry_point, str) else env_spec.entry_point
    if not (isinstance(creator, type) and issubclass(creator, AgentEnv)):
        return EnvInfo(id=id, description="(not an AgentEnv)", tools=[], needs_sandbox=False,
                       max_turns=env_spec.max_episode_steps)
    doc = (creator.__doc__ or "").strip().splitlines()
    max_turns = env_spec.kwargs.get("max_turns", creator.Config.model_fields["max_turns"].default)
    return EnvInfo(
        id=id,
        description=creator.description or (doc[0] if doc else ""),
        tools=[t.name for t in tools_of(creator)],
        needs_sandbox=creator.needs_sandbox,
        max_turns=max_turns,
    )


def load_plugins() -> list[str]:
    """Run every `treegym.envs` entry point; a broken plugin warns instead of breaking import."""
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            if callable(target):
                target()
        except Exception as exc:  # noqa: BLE001 - one bad plugin must not hide the others
            warnings.warn(
                f"treegym plugin {ep.name!r} ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}",
                stacklevel=2,
            )
            continue
        loaded.append(ep.name)
    return loaded
