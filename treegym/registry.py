"""treegym's env registry: Gymnasium's own, with ids in any package's namespace.

Ids follow Gymnasium's `namespace/Name-vN`, and each package owns its namespace: the
bundled tasks are `treegym/...`, a plugin's might be `mylab/...`. Registering through
Gymnasium means `gymnasium.make("mylab/X-v0")` works too; this module adds what Gymnasium
lacks for agent tasks: a list of just the treegym envs (not CartPole), suggestions for a
mistyped id, a summary of each env's tools, and plugins through the `treegym.envs`
entry-point group, whose failures are kept so that `treegym envs` can report them.
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import gymnasium
from gymnasium.envs.registration import EnvSpec, load_env_creator
from pydantic import BaseModel

from .env import AgentEnv
from .errors import ConfigError, TreegymError, UnknownEnvError, close_matches
from .tools import tools_of

ENTRY_POINT_GROUP = "treegym.envs"
REMOTE_PREFIX = "remote:"  # `remote:ws://HOST:PORT` names an env served by `treegym serve`
_ID = re.compile(r"[\w:-]+/[\w:.-]+-v\d+")  # Gymnasium's id grammar, namespace and version required
_LISTED_IDS = 20  # an unknown-id error lists at most this many registered ids
# Ids registered through `register`: Gymnasium's registry also holds CartPole and friends,
# and telling an AgentEnv apart from a string entry point would mean importing every env.
_REGISTERED: set[str] = set()


class EnvInfo(BaseModel):
    """One row of `treegym envs`."""

    id: str
    description: str
    tools: list[str]
    needs_sandbox: bool
    max_turns: int | None


class PluginFailure(BaseModel):
    """A `treegym.envs` entry point that raised while loading, kept for `treegym envs`."""

    name: str
    value: str
    package: str | None
    error: str

    def __str__(self) -> str:
        way_out = f"fix or uninstall {self.package!r}" if self.package else "fix or remove it"
        return (f"treegym plugin {self.name!r} ({self.value}) failed to load: {self.error}; "
                f"{way_out}")


class PluginError(TreegymError, RuntimeError):
    """Plugins that failed to load, where a command must not go on as if they had none."""


_failures: list[PluginFailure] = []


def register(
    id: str, entry_point: Any, kwargs: dict[str, Any] | None = None, **spec_kwargs: Any
) -> None:
    """Register an AgentEnv as `namespace/Name-vN`; `kwargs` become its default options."""
    if not _ID.fullmatch(id):
        *head, tail = id.split("/")
        namespace = head[0] if len(head) == 1 and re.fullmatch(r"[\w:-]+", head[0]) else "mylab"
        name = re.sub(r"[^\w.-]", "", re.sub(r"-v\d*$", "", tail)) or "Name"
        raise ConfigError(f"env id {id!r} is not of the form 'namespace/Name-vN': use your "
                          f"package's namespace and a version, e.g. '{namespace}/{name}-v0'")
    # AgentEnv enforces reset-before-step and its own turn limit, so Gymnasium's
    # wrappers would only hide `fork()` behind a wrapper that can't forward it.
    spec_kwargs.setdefault("disable_env_checker", True)
    spec_kwargs.setdefault("order_enforce", False)
    gymnasium.register(id=id, entry_point=entry_point, kwargs=dict(kwargs or {}), **spec_kwargs)
    _REGISTERED.add(id)


def _is_treegym(env_id: str) -> bool:
    """Registered through `register`, or (registered with Gymnasium directly) an AgentEnv
    class given as the entry point itself; a string entry point is not imported to check."""
    found = gymnasium.registry.get(env_id)
    if found is None:
        return False
    creator = found.entry_point
    return env_id in _REGISTERED or (isinstance(creator, type) and issubclass(creator, AgentEnv))


def list_envs() -> list[str]:
    """Every registered treegym id, of every namespace, sorted."""
    return sorted(i for i in gymnasium.registry if _is_treegym(i))


def spec(id: str) -> EnvSpec:
    """The EnvSpec of a treegym id; an unknown id names the closest registered ones."""
    if _is_treegym(id):
        return gymnasium.registry[id]
    known = list_envs()

    def base(env_id: str) -> str:  # "mylab/Maze-v0" -> "maze": namespace, version add noise
        return re.sub(r"-v\d+$", "", env_id.split("/")[-1]).lower()

    guesses = close_matches(id, known, key=base)
    if guesses:
        hint = f" Did you mean {', '.join(guesses)}?"
    else:  # nothing close: show what exists, so the way out is on the same line
        shown = known[:_LISTED_IDS]
        more = f" and {len(known) - len(shown)} more" if len(known) > len(shown) else ""
        hint = f" Registered: {', '.join(shown) or '(none)'}{more}."
    if id in gymnasium.registry:
        hint = f" It is a Gymnasium env, not a treegym one (see treegym.register).{hint}"
    raise UnknownEnvError(
        f"unknown env id {id!r}.{hint} Run `treegym envs` to list the "
        f"{len(known)} registered ids."
    )


def check_id(id: str) -> None:
    """Fail now on an id `make` can't build. A `remote:URL` id (an env that `treegym serve`
    serves) is checked when it connects, since only the server knows its env."""
    if not id.startswith(REMOTE_PREFIX):
        spec(id)


def make(id: str, **kwargs: Any) -> AgentEnv:
    """Build a registered env, or connect to a served one for a `remote:ws://HOST:PORT` id;
    `kwargs` override the options it was registered with."""
    if id.startswith(REMOTE_PREFIX):
        from .serve.remote import make_remote

        return make_remote(id, **kwargs)
    env = gymnasium.make(spec(id), **kwargs).unwrapped
    if not isinstance(env, AgentEnv):
        env.close()
        raise ConfigError(f"{id} is registered but is not an AgentEnv ({type(env).__name__})")
    return env


def env_class(id: str) -> type[AgentEnv] | None:
    """The AgentEnv class `id` is registered with, without building it; None when its
    entry point makes something else (a function, or a plain Gymnasium env)."""
    entry_point = spec(id).entry_point
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    return creator if isinstance(creator, type) and issubclass(creator, AgentEnv) else None


def env_info(id: str) -> EnvInfo:
    """Describe an env from its class and spec, without building it."""
    env_spec = spec(id)
    creator = env_class(id)
    if creator is None:
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


def _failure(ep: EntryPoint, exc: Exception) -> PluginFailure:
    return PluginFailure(name=ep.name, value=ep.value, package=ep.dist.name if ep.dist else None,
                         error=f"{type(exc).__name__}: {exc}")


def load_plugins() -> list[str]:
    """Run every `treegym.envs` entry point and return the names that loaded.

    A broken plugin warns instead of breaking `import treegym` (one bad package must not
    take every other env down), and is kept in `plugin_failures()`, so that a command
    that lists envs can refuse to pass it over in silence.
    """
    loaded = []
    _failures.clear()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            if callable(target):
                target()
        except Exception as exc:  # noqa: BLE001 - one bad plugin must not hide the others
            _failures.append(_failure(ep, exc))
            warnings.warn(str(_failures[-1]), stacklevel=2)
            continue
        loaded.append(ep.name)
    return loaded


def plugin_failures() -> list[PluginFailure]:
    """The plugins the last `load_plugins()` (the one `import treegym` runs) could not load."""
    return [failure.model_copy() for failure in _failures]
