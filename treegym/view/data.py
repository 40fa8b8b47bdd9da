"""Tree records reshaped for the viewer page: per node what to show, per tree its savings,
per task (of each file) its trees.

The page does no accounting of its own: everything it shows is computed here from the
records, and for rollout trees the savings equal what `treegym rollout` prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..records import Node, Tree, read_jsonl


def load_trees(path: str | Path) -> list[Tree]:
    return list(read_jsonl(path, Tree))


def _node(tree: Tree, node: Node, kept: set[int]) -> dict[str, Any]:
    entropies = node.entropies
    return {
        "id": node.id,
        "parent": node.parent,
        "depth": node.depth,
        "origin": None if node.origin is None else node.origin.model_dump(),
        "made_by": node.made_by,
        "action": node.action,
        "calls": [{"name": c.name, "arguments": c.arguments} for c in node.calls],
        "results": [
            {"name": r.name, "output": r.output, "error": r.error, "seconds": r.seconds}
            for r in node.results
        ],
        "observation": node.observation,
        "action_tokens": len(node.action_ids),
        "obs_tokens": len(node.obs_ids),
        "mean_entropy": sum(entropies) / len(entropies) if entropies else None,
        "finish_reason": node.finish_reason,
        "gen_seconds": node.gen_seconds,
        "tool_seconds": node.tool_seconds,
        "reward": node.reward,
        "leaf": node.is_leaf,
        "reason": node.reason,
        "return": tree.reward(node.id) if node.is_leaf else None,
        "kept": node.id in kept,
        "advantage": tree.advantages.get(node.id),
        "error": node.error,
    }


def tips(tree: Tree) -> list[int]:
    """Nodes with no children: the leaves, plus the open ends a play session may leave."""
    parents = {node.parent for node in tree.nodes}
    return [node.id for node in tree.nodes if node.id not in parents]


def savings(tree: Tree) -> dict[str, Any]:
    """What the tree generated, prefilled and executed, beside independent chains' cost.

    The chains are one per tip, so a rollout tree (whose tips are its leaves) gets the
    figures `treegym rollout` prints, and a play session's open branches count too.
    """
    chain_generated = chain_prefilled = chain_calls = 0
    for tip in tips(tree):
        path = tree.path(tip)
        chain_generated += sum(len(n.action_ids) for n in path)
        chain_prefilled += len(tree.prompt_ids) + sum(len(n.obs_ids) for n in path)
        chain_calls += sum(len(n.calls) for n in path)
    return {
        "generated": sum(len(n.action_ids) for n in tree.nodes),
        "chain_generated": chain_generated,
        "prefilled": len(tree.prompt_ids) + sum(len(n.obs_ids) for n in tree.nodes),
        "chain_prefilled": chain_prefilled,
        "tool_calls": sum(len(n.calls) for n in tree.nodes),
        "chain_tool_calls": chain_calls,
    }


def task_key(tree: Tree) -> str:
    """The task a tree belongs to within its file: the task's own id, or, for envs whose
    tasks have none, its index. An index is only a position in one run (it shifts with the
    run's seed), so it would split one task and merge two."""
    return tree.task.id or f"#{tree.task_index}"


def view_model(files: Mapping[str, Sequence[Tree]]) -> dict[str, Any]:
    """Everything the page draws, as JSON-ready data, for the trees of each named file.

    Trees are grouped into tasks by (file, env, task) here, so the page only draws groups:
    two files' trees of one task stay apart, as runs to compare side by side.
    """
    shown: list[dict[str, Any]] = []
    tasks: dict[tuple[str, str, str], dict[str, Any]] = {}
    for source, trees in files.items():
        for tree in trees:
            key = (source, tree.env_id, task_key(tree))
            group = tasks.setdefault(key, {"file": source, "env_id": tree.env_id,
                                           "task": key[2], "seeds": [], "trees": []})
            group["trees"].append(len(shown))
            if tree.seed not in group["seeds"]:
                group["seeds"].append(tree.seed)
            shown.append(_tree(tree, source))
    return {"source": ", ".join(files), "files": list(files), "tasks": list(tasks.values()),
            "trees": shown}


def _tree(tree: Tree, source: str) -> dict[str, Any]:
    kept = set(tree.kept)
    return {
        "file": source,
        "env_id": tree.env_id,
        "task_id": tree.task.id,
        "task_index": tree.task_index,
        "tree_index": tree.tree_index,
        "seed": tree.seed,
        "mode": tree.mode,
        "policy": tree.policy,
        "prompt": tree.task.prompt,
        "prompt_tokens": len(tree.prompt_ids),
        "tools": [t.get("function", {}).get("name", "?") for t in tree.tools],
        "leaves": len(tree.leaves),
        "kept": len(tree.kept),
        "savings": savings(tree),
        "nodes": [_node(tree, node, kept) for node in tree.nodes],
    }
