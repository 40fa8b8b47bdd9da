"""A records file for the viewer: real tree rollouts, one of them with advantages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import call


@pytest.fixture(scope="session")
def trees_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Maze trees from a scripted policy (leaves with returns 0 and 1); the first
    tree carries per-node advantages the way a learner would add them."""
    pytest.importorskip("transformers", reason="rollouts need the torch extra's tokenizer")
    from treegym.policy import MenuPolicy, SamplingParams, load_tokenizer, tiny_path
    from treegym.rollout import TreeSampler, collect

    moves = [call("move", direction=d) for d in ("north", "south", "east", "west")]
    policy = MenuPolicy(load_tokenizer(tiny_path()), [*moves, "<answer>2</answer>"], seed=0)
    path = tmp_path_factory.mktemp("view") / "trees.jsonl"
    result = collect("treegym/Maze-v0", policy, TreeSampler(m=1, n=2, l=1, k=2), tasks=2,
                     params=SamplingParams(seed=0), env_kwargs={"size": 2, "max_turns": 3})
    rows = [tree.model_dump(mode="json") for tree in result.trees]
    first = result.trees[0]
    returns = {leaf: first.reward(leaf) for leaf in first.kept}
    mean = sum(returns.values()) / len(returns)
    rows[0]["advantages"] = {str(leaf): ret - mean for leaf, ret in returns.items()}
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
