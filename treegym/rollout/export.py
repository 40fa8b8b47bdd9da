"""Leaves as flat chat trajectories, the shape TRL and verl users load.

Each kept leaf becomes one JSON object: OpenAI-style messages (the assistant's raw text
plus its parsed `tool_calls`, then one `tool` message per result), the tool schemas, and
the leaf's reward.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..records import Tree


def chat_records(tree: Tree) -> Iterator[dict[str, Any]]:
    """One chat trajectory per kept leaf of `tree`."""
    for leaf in tree.kept:
        path = tree.path(leaf)
        messages: list[dict[str, Any]] = [{"role": "user", "content": tree.task.prompt}]
        for i, node in enumerate(path):
            message: dict[str, Any] = {"role": "assistant", "content": node.action}
            if node.calls:
                message["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                    for c in node.calls
                ]
            messages.append(message)
            if i < len(path) - 1:  # the last observation was never shown to the model
                messages.append({"role": "tool", "content": node.observation})
        yield {
            "env_id": tree.env_id,
            "task_id": tree.task.id,
            "task_index": tree.task_index,
            "tree_index": tree.tree_index,
            "leaf": leaf,
            "messages": messages,
            "tools": tree.tools,
            "reward": tree.reward(leaf),
            "reason": path[-1].reason,
        }
