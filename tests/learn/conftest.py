"""Fixtures for learner tests: small hand-made trees and the tiny architecture."""

from __future__ import annotations

import os

import pytest

from treegym.records import Node, Origin, Task, Tree


def make_tree(
    rewards: list[float],
    *,
    task_index: int = 0,
    tree_index: int = 0,
    prompt_ids: list[int] | None = None,
    env_id: str = "test",
) -> Tree:
    """A trunk node (ids 10, 11 + obs 12) with one leaf child per reward (ids 20+i, 30+i)."""
    nodes = [Node(id=0, parent=None, depth=1, action_ids=[10, 11],
                  action_logprobs=[-0.5, -0.6], obs_ids=[12])]
    for i, r in enumerate(rewards):
        nodes.append(Node(id=i + 1, parent=0, depth=2, origin=Origin(round=1, index=i),
                          action_ids=[20 + i, 30 + i], action_logprobs=[-1.0, -1.5],
                          reward=r, terminated=True))
    return Tree(env_id=env_id, task=Task(id="t", prompt="p"), task_index=task_index,
                tree_index=tree_index, seed=0, mode="tree", policy="test",
                prompt_ids=prompt_ids or [1, 2, 3], nodes=nodes,
                kept=[n.id for n in nodes[1:]])


@pytest.fixture(scope="session")
def model():
    """The tiny architecture at the usual 0.02 init, fp32, SDPA (see learn/bench.py why)."""
    pytest.importorskip("transformers")
    from treegym.learn.bench import bench_model

    return bench_model(device="cpu")


@pytest.fixture(autouse=True)
def linear_from(monkeypatch):
    """TREEGYM_LINEAR_FROM=0 runs the learner tests on the memory-linear tree attention
    (learn/tree_attention.py), which the default threshold keeps for long trees only."""
    if "TREEGYM_LINEAR_FROM" in os.environ:
        from treegym.learn import forward

        monkeypatch.setattr(forward, "LINEAR_FROM", int(os.environ["TREEGYM_LINEAR_FROM"]))
