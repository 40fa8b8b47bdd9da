"""Tree rollouts: nothing regenerated, nothing re-executed, every leaf replays exactly,
interruption keeps whole trees, resume finishes the rest."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers import CounterEnv, call

import treegym
from treegym import Tree, read_jsonl
from treegym.policy import MenuPolicy, SamplingParams, load_tokenizer, make_policy, tiny_path
from treegym.rollout import ChainSampler, TreeSampler, collect
from treegym.sandboxes.local import worker_processes

pytest.importorskip("transformers", reason="rollouts need the torch extra for the tokenizer")

MOVES = [call("move", direction=d) for d in ("north", "south", "east", "west")]


@pytest.fixture(scope="module")
def tiny() -> object:
    policy = make_policy("tiny")
    yield policy
    policy.close()


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return load_tokenizer(tiny_path())


def distinct_action_tokens(trees: list[Tree]) -> int:
    return sum(len(node.action_ids) for tree in trees for node in tree.nodes)


def test_tree_generates_each_distinct_token_once(tiny: object) -> None:
    before = tiny.ledger.generated
    result = collect("treegym/Maze-v0", tiny, TreeSampler(m=2, n=2, l=2, k=None), tasks=2,
                     params=SamplingParams(max_tokens=12, seed=1), env_kwargs={"max_turns": 3})
    trees = result.trees
    assert len(trees) == 4 and all(len(t.leaves) == 5 for t in trees)
    assert result.stats.generated_tokens == tiny.ledger.generated - before
    assert result.stats.generated_tokens == distinct_action_tokens(trees)
    assert result.stats.chain_generated_tokens > result.stats.generated_tokens
    for tree in trees:  # expansions hang off the root or a non-leaf node, at the right depth
        by_id = {n.id: n for n in tree.nodes}
        for node in tree.nodes:
            if node.parent is not None:
                assert not by_id[node.parent].is_leaf
                assert node.depth == by_id[node.parent].depth + 1


def test_tool_calls_run_once_per_distinct_node(tokenizer: object) -> None:
    treegym.register("treegym/RolloutCounter-v0", entry_point=CounterEnv)
    policy = MenuPolicy(tokenizer, [call("add", amount=1), call("add", amount=2),
                                    call("add", amount=1) + call("add", amount=5)])
    CounterEnv.executions = 0
    result = collect("treegym/RolloutCounter-v0", policy, TreeSampler(m=2, n=3, l=2, k=4),
                     tasks=3, params=SamplingParams(seed=0), env_kwargs={"max_turns": 4})
    executed = sum(len(node.calls) for tree in result.trees for node in tree.nodes)
    assert CounterEnv.executions == executed == result.stats.tool_calls
    assert result.stats.chain_tool_calls > executed
    assert all(len(t.kept) == 4 for t in result.trees)


def replay(tree: Tree, leaf: int) -> None:
    """A fresh env, stepped with the leaf's actions, gives the recorded world."""
    env = treegym.make(tree.env_id, **tree.env_kwargs)
    try:
        obs, info = env.reset(seed=tree.seed)
        assert info["task"] == tree.task
        total = 0.0
        for node in tree.path(leaf):
            obs, reward, terminated, truncated, _ = env.step(node.action)
            assert (obs, reward, terminated, truncated) == (
                node.observation, node.reward, node.terminated, node.truncated)
            total += reward
        assert total == tree.reward(leaf)
    finally:
        env.close()


@pytest.mark.parametrize("branch", ["random", "entropy"])
def test_every_leaf_replays_in_a_fresh_env(tokenizer: object, branch: str) -> None:
    policy = MenuPolicy(tokenizer, [*MOVES, call("look"), "<answer>here</answer>", "hmm"])
    result = collect("treegym/Maze-v0", policy,
                     TreeSampler(m=2, n=2, l=2, k=None, branch=branch), tasks=3,
                     params=SamplingParams(seed=7))
    for tree in result.trees:
        for leaf in tree.leaves:
            replay(tree, leaf)


def test_entropy_branching_prefers_uncertain_turns(tokenizer: object) -> None:
    sampler = TreeSampler(m=1, n=2, l=1, branch="entropy")
    policy = MenuPolicy(tokenizer, MOVES)
    tree = collect("treegym/Maze-v0", policy, sampler, tasks=1,
                   params=SamplingParams(seed=3), env_kwargs={"max_turns": 4}).trees[0]
    chain = [n for n in tree.nodes if n.origin is None]
    for node in chain:  # make turn 2 the uncertain one
        node.entropies = [5.0] if node.depth == 2 else [0.1]
    import numpy as np

    points = sampler.expansion_points(chain, np.random.default_rng(0))
    assert points[0] == chain[0].id  # the node whose *child* turn was uncertain
    assert None not in points[:1]


def test_sandbox_tree_replays_and_leaves_no_workers(tokenizer: object) -> None:
    before = set(worker_processes(ancestor=os.getpid()))
    policy = MenuPolicy(tokenizer, [
        call("python", code="x = globals().get('x', 0) + 1\nprint(x)"),
        call("python", code="print(sum(range(10)))"),
        "<answer>45</answer>",
    ])
    result = collect("treegym/PyCalc-v0", policy, TreeSampler(m=1, n=2, l=1), tasks=2,
                     params=SamplingParams(seed=2), env_kwargs={"max_turns": 4})
    assert set(worker_processes(ancestor=os.getpid())) <= before
    for tree in result.trees:
        for leaf in tree.leaves:
            replay(tree, leaf)


def test_interrupt_keeps_whole_trees_and_resume_finishes(tokenizer: object,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    policy = MenuPolicy(tokenizer, MOVES)
    before = set(worker_processes(ancestor=os.getpid()))
    seen = []

    def interrupt(tree: Tree) -> None:
        seen.append(tree)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect("treegym/PyCalc-v0", policy, ChainSampler(n=2), tasks=3, out=out,
                params=SamplingParams(seed=0), env_kwargs={"max_turns": 2}, on_tree=interrupt)
    assert set(worker_processes(ancestor=os.getpid())) <= before
    kept = list(read_jsonl(out, Tree))
    assert len(kept) == 2
    with out.open("a") as fh:  # a crash mid-write leaves a torn line behind
        fh.write('{"env_id": "treegym/PyC')
    result = collect("treegym/PyCalc-v0", policy, ChainSampler(n=2), tasks=3, out=out,
                     resume=True, params=SamplingParams(seed=0), env_kwargs={"max_turns": 2})
    assert len(result.trees) == 4
    final = list(read_jsonl(out, Tree))
    assert sorted((t.task_index, t.tree_index) for t in final) == [
        (task, tree) for task in range(3) for tree in range(2)]
    assert final[:2] == kept


def test_trees_round_trip_and_flatten(tokenizer: object, tmp_path: Path) -> None:
    policy = MenuPolicy(tokenizer, MOVES)
    out = tmp_path / "t.jsonl"
    result = collect("treegym/Maze-v0", policy, TreeSampler(m=1, n=2, l=1), tasks=1, out=out,
                     params=SamplingParams(seed=0), env_kwargs={"max_turns": 3})
    (back,) = read_jsonl(out, Tree)
    assert back == result.trees[0]
    for traj in back.trajectories():
        path = back.path(traj.leaf)
        assert traj.ids[: len(back.prompt_ids)] == back.prompt_ids
        assert sum(traj.action_mask) == sum(len(n.action_ids) for n in path)
        assert len(traj.ids) == len(traj.action_mask) == len(traj.logprobs)
        sampled = [i for i, m in zip(traj.ids, traj.action_mask, strict=True) if m]
        assert sampled == [i for n in path for i in n.action_ids]


def test_a_crashing_branch_is_recorded_and_the_rest_go_on(tokenizer: object) -> None:
    killer = call("python", code="import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    policy = MenuPolicy(tokenizer, [killer, call("python", code="print(6 * 7)")])
    result = collect("treegym/PyCalc-v0", policy, TreeSampler(m=2, n=2, l=1), tasks=2,
                     params=SamplingParams(seed=4), env_kwargs={"max_turns": 3})
    assert len(result.trees) == 4 and all(len(t.leaves) == 3 for t in result.trees)
    results = [r for t in result.trees for n in t.nodes for r in n.results]
    crashed = [r for r in results if not r.ok]
    assert crashed and all("python failed" in r.error for r in crashed)
    assert any(r.ok and r.output == "42" for r in results)


def test_trees_do_not_depend_on_batching(tiny: object) -> None:
    """The same seed gives the same trees whether all tasks share batches or not."""
    sampler = TreeSampler(m=2, n=2, l=1)
    params = SamplingParams(max_tokens=8, seed=11)
    runs = [collect("treegym/Maze-v0", tiny, sampler, tasks=2, params=params,
                    env_kwargs={"max_turns": 3}, max_branches=cap).trees for cap in (32, 1)]
    together, apart = ([(t.task_index, t.tree_index, [(n.parent, n.action_ids) for n in t.nodes])
                        for t in trees] for trees in runs)
    assert together == apart


def test_a_branch_sees_its_whole_path(tiny: object) -> None:
    """Each node's action was sampled from exactly the context the learner rebuilds for it:
    the prompt and every action and observation on its path, so scoring the recorded
    leaves gives back the recorded log-probs. A branch forked before its parent's
    observation was appended would be off by a wide margin here."""
    from treegym.learn.forward import score
    from treegym.learn.packing import rows

    result = collect("treegym/Maze-v0", tiny, TreeSampler(m=1, n=3, l=2, k=None), tasks=2,
                     params=SamplingParams(max_tokens=8, seed=5), env_kwargs={"max_turns": 3})
    trees = result.trees
    assert any(n.parent is not None and n.origin is not None
               for t in trees for n in t.nodes), "some expansion should start below the root"
    tiny.model.eval()
    for seq in rows(trees):
        logp, _ = score(tiny.model, seq)
        assert (logp.detach() - seq.old_logprobs).abs().max().item() < 1e-3


def test_a_step_past_the_watchdog_ends_its_branch_and_frees_its_world(tokenizer: object) -> None:
    """Each python() call stays inside its own timeout; the step of many does not."""
    before = set(worker_processes(ancestor=os.getpid()))
    slow = call("python", code="import time; time.sleep(1.5)")
    policy = MenuPolicy(tokenizer, [slow + slow + slow])
    start = time.monotonic()
    result = collect("treegym/PyCalc-v0", policy, ChainSampler(n=2), tasks=1,
                     params=SamplingParams(seed=0), env_kwargs={"max_turns": 3},
                     step_timeout=2.0)
    assert time.monotonic() - start < 4.0
    errors = [tree.nodes[leaf].error or "" for tree in result.trees for leaf in tree.leaves]
    assert len(errors) == 2 and all("watchdog" in e for e in errors), errors
    assert set(worker_processes(ancestor=os.getpid())) <= before
