"""Demonstrations for a supervised warm start: an env's scripted episodes as chain trees.

A random-init model writes no tool calls, and a small instruct model rarely writes the
answer tags, so RL from scratch never sees a reward. A few supervised steps on episodes
that an env scripts itself (`AgentEnv.demonstration`) teach the action format; with
`optimal < 1` most scripted steps are wrong ones, so the warm start teaches the format
without solving the task, and the reward still has room to rise under RL.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..env import AgentEnv
from ..errors import ConfigError
from ..policy import ChatRenderer
from ..records import Tree
from ..registry import REMOTE_PREFIX, env_class, list_envs, make
from ..rollout import Point, TreeBuilder


def require_demonstrations(env_id: str) -> None:
    """Fail before any model loads when `env_id` can't script its episodes."""
    if env_id.startswith(REMOTE_PREFIX):
        raise ConfigError(
            f"warm_start needs demonstrations, and {env_id} is served elsewhere: its "
            "demonstration() runs only in-process. Warm-start on the env's registered id "
            "and pass the result as init_weights, or set warm_start.steps: 0")
    cls = env_class(env_id)
    if cls is not None and cls.has_demonstration():
        return
    able = [i for i in list_envs() if (c := env_class(i)) is not None and c.has_demonstration()]
    raise ConfigError(
        f"warm_start needs demonstrations, and {env_id} has none (its env class defines no "
        f"demonstration()). Envs that have them: {', '.join(able) or '(none)'}. Otherwise "
        "start from init_weights, or set warm_start.steps: 0"
    )


def demonstrations(
    env_id: str,
    tokenizer: Any,
    episodes: int,
    *,
    seed: int,
    optimal: float = 0.0,
    env_kwargs: dict[str, Any] | None = None,
) -> list[Tree]:
    """`episodes` scripted episodes (reset seeds `seed + i`), each a one-leaf tree whose
    turns are marked `scripted`, so RL never takes them for sampled ones."""
    chat = ChatRenderer(tokenizer)
    env_kwargs = dict(env_kwargs or {})
    rng = np.random.default_rng(seed)
    trees = []
    for i in range(episodes):
        env = make(env_id, **env_kwargs)
        try:
            trees.append(_scripted_tree(env, chat, rng, optimal, env_id=env_id,
                                        env_kwargs=env_kwargs, seed=seed + i, index=i))
        finally:
            env.close()
    return trees


def _scripted_tree(env: AgentEnv, chat: ChatRenderer, rng: np.random.Generator,
                   optimal: float, *, env_id: str, env_kwargs: dict[str, Any], seed: int,
                   index: int) -> Tree:
    """Replay the env's script through a `TreeBuilder`, as the engine records sampled turns."""
    obs, info = env.reset(seed=seed)
    prompt_ids = chat.prompt_ids([{"role": "user", "content": obs}], info["tools"])
    actions = env.demonstration(rng, optimal)
    if not actions:
        raise ConfigError(f"{env_id}: demonstration() gave no actions for seed {seed}")
    builder = TreeBuilder(chat)
    point = Point(env, None)
    parent: int | None = None
    for text in actions:
        node = builder.step(point, parent, text, made_by="scripted")
        parent = node.id
        if node.is_leaf:
            break
    return Tree(
        env_id=env_id, env_kwargs=env_kwargs, task=info["task"], task_index=index,
        tree_index=0, seed=seed, mode="chain", policy="demonstration",
        tools=info["tools"], prompt_ids=prompt_ids, nodes=builder.nodes, kept=[parent],
    )
