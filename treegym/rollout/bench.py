"""`treegym bench rollout`: chain vs tree on the same tasks, policy and leaf count.

The expected token ratio follows from the shape alone: an expansion point drawn uniformly
among the root and the non-leaf nodes of a T-turn chain saves about half a chain, so a
tree of 1 + n·l leaves costs about 1 + n·l/2 chains where independent chains cost
1 + n·l. The measured figure is printed beside that expectation.
"""

from __future__ import annotations

from typing import Any

from ..policy import SamplingParams, make_policy
from ..progress import Progress, counter, silent
from ..records import Tree
from .collect import collect
from .samplers import ChainSampler, TreeSampler


def expected_token_ratio(sampler: TreeSampler) -> float:
    leaves = sampler.leaves_per_tree
    return leaves / (1 + sampler.n * sampler.l / 2)


def _distinct(trees: list[Tree]) -> tuple[int, int]:
    tokens = sum(len(n.action_ids) for t in trees for n in t.nodes)
    calls = sum(len(n.calls) for t in trees for n in t.nodes)
    return tokens, calls


def bench_rollout(env_id: str, *, spec: str = "tiny", m: int = 2, n: int = 2, l: int = 1,  # noqa: E741
                  tasks: int = 16, max_tokens: int = 32, seed: int = 0, max_branches: int = 16,
                  env_kwargs: dict[str, Any] | None = None,
                  progress: Progress = silent) -> dict[str, Any]:
    """Run both samplers back to back and compare cost per leaf. Every leaf is kept in
    both modes, so the leaf counts match: m·(1+n·l) per task. Both run with the same cap
    on live branches, so generate batches are about as full in either mode and wall time
    per leaf compares like with like."""
    tree_sampler = TreeSampler(m=m, n=n, l=l, k=None)
    chain_sampler = ChainSampler(n=tree_sampler.leaves_per_task)
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed)
    policy = make_policy(spec)
    try:
        runs = {}
        for name, sampler in (("chain", chain_sampler), ("tree", tree_sampler)):
            before = policy.ledger.generated
            tick = counter(progress, tasks * sampler.trees_per_task, f"{name} trees")
            result = collect(env_id, policy, sampler, tasks, seed=seed, params=params,
                             env_kwargs=env_kwargs, max_branches=max_branches, on_tree=tick)
            runs[name] = (result, policy.ledger.generated - before)
    finally:
        policy.close()
    figures: dict[str, Any] = {"env_id": env_id, "policy": spec,
                               "shape": {"m": m, "n": n, "l": l, "tasks": tasks,
                                         "max_branches": max_branches,
                                         "max_tokens": max_tokens,
                                         "env_kwargs": dict(env_kwargs or {})}}
    for name, (result, generated) in runs.items():
        leaves = result.stats.leaves
        figures[f"leaves_{name}"] = leaves
        figures[f"gen_tokens_per_leaf_{name}"] = round(generated / leaves, 2)
        figures[f"tool_calls_per_leaf_{name}"] = round(result.stats.tool_calls / leaves, 3)
        figures[f"wall_per_leaf_{name}_s"] = round(result.stats.wall_seconds / leaves, 4)
    figures["token_ratio"] = round(
        figures["gen_tokens_per_leaf_chain"] / figures["gen_tokens_per_leaf_tree"], 3)
    figures["expected_token_ratio"] = round(expected_token_ratio(tree_sampler), 3)
    figures["wall_per_leaf_ratio"] = round(
        figures["wall_per_leaf_chain_s"] / figures["wall_per_leaf_tree_s"], 3)
    tree_result, tree_generated = runs["tree"]
    distinct_tokens, distinct_calls = _distinct(tree_result.trees)
    figures["regenerated_tokens"] = tree_generated - distinct_tokens
    figures["reexecuted_tool_calls"] = tree_result.stats.tool_calls - distinct_calls
    return figures
