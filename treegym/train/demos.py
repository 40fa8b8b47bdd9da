"""Demonstrations for a supervised warm start on Maze: scripted episodes as chain trees.

A random-init model writes no tool calls, so RL from scratch never sees a reward. A few
supervised steps on scripted episodes teach the Hermes call format; with `optimal < 1`
most moves are random open directions, so the warm start teaches the format without
solving the task, and the reward still has room to rise under RL.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..policy import ChatRenderer
from ..records import Node, Tree
from ..registry import make


def move_call(direction: str) -> str:
    call = json.dumps({"name": "move", "arguments": {"direction": direction}})
    return f"<tool_call>\n{call}\n</tool_call>"


def maze_demonstrations(
    env_id: str,
    tokenizer: Any,
    episodes: int,
    *,
    seed: int,
    optimal: float = 0.0,
    env_kwargs: dict[str, Any] | None = None,
) -> list[Tree]:
    """`episodes` scripted Maze episodes (reset seeds `seed + i`), each a one-leaf tree."""
    chat = ChatRenderer(tokenizer)
    env_kwargs = dict(env_kwargs or {})
    rng = np.random.default_rng(seed)
    trees = []
    for i in range(episodes):
        env = make(env_id, **env_kwargs)
        obs, info = env.reset(seed=seed + i)
        maze = env.unwrapped
        prompt_ids = chat.prompt_ids([{"role": "user", "content": obs}], info["tools"])
        nodes: list[Node] = []
        while not (nodes and nodes[-1].is_leaf):
            if rng.random() < optimal:
                direction = maze.maze.path(maze.position)[0]
            else:
                direction = str(rng.choice(maze.maze.open_from(maze.position)))
            text = move_call(direction)
            ids = chat.encode(text) + [tokenizer.eos_token_id]
            obs, reward, terminated, truncated, _ = env.step(text)
            node = Node(
                id=len(nodes), parent=nodes[-1].id if nodes else None, depth=len(nodes) + 1,
                branch="scripted", action_ids=ids, action_logprobs=[0.0] * len(ids),
                action=text, observation=obs, reward=reward,
                terminated=terminated, truncated=truncated,
            )
            if not node.is_leaf:
                node.obs_ids = chat.turn_ids(ids, [obs])
            nodes.append(node)
        env.close()
        trees.append(Tree(
            env_id=env_id, env_kwargs=env_kwargs, task=info["task"], task_index=i,
            tree_index=0, seed=seed + i, mode="chain", policy="demonstration",
            tools=info["tools"], prompt_ids=prompt_ids, nodes=nodes, kept=[nodes[-1].id],
        ))
    return trees
