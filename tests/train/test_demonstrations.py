"""Scripted demonstrations, the warm start's data, for every env that has them."""

from __future__ import annotations

import numpy as np
import pytest

from treegym.errors import ConfigError
from treegym.parsing import parse_action
from treegym.policy import make_policy
from treegym.train import TrainConfig, train
from treegym.train.demos import demonstrations, require_demonstrations


@pytest.fixture(scope="module")
def tokenizer():
    return make_policy("tiny").tokenizer


def test_maze_demonstrations_walk_the_path_when_optimal(tokenizer) -> None:
    trees = demonstrations("treegym/Maze-v0", tokenizer, 3, seed=5, optimal=1.0,
                           env_kwargs={"size": 3})
    for tree in trees:
        leaf = tree.nodes[-1]
        assert tree.reward(leaf.id) == pytest.approx(1.0) and leaf.terminated
        assert all(node.made_by == "scripted" and not node.sampled for node in tree.nodes)
        assert all(parse_action(node.action).calls[0].name == "move" for node in tree.nodes)
        assert len(tree.nodes) == tree.task.answer  # shortest path: one move per step
        inner = tree.nodes[:-1]
        assert all(node.obs_ids for node in inner) and not leaf.obs_ids


def test_maze_demonstrations_wander_when_not_optimal(tokenizer) -> None:
    trees = demonstrations("treegym/Maze-v0", tokenizer, 8, seed=0, optimal=0.0,
                           env_kwargs={"size": 4, "max_turns": 3})
    assert all(len(tree.nodes) <= 3 for tree in trees)
    assert any(not tree.nodes[-1].terminated for tree in trees), "random walks rarely arrive"
    walls = [node for tree in trees for node in tree.nodes if "wall" in node.observation]
    assert not walls, "a random move still picks an open direction"


@pytest.mark.parametrize("env_id", ["treegym/RG-chain_sum-v0", "treegym/PyCalc-v0"])
def test_answer_demonstrations_are_right_or_near_misses(tokenizer, env_id: str) -> None:
    pytest.importorskip("reasoning_gym")
    right = demonstrations(env_id, tokenizer, 3, seed=1, optimal=1.0)
    assert [tree.reward(tree.nodes[-1].id) for tree in right] == [1.0] * 3
    wrong = demonstrations(env_id, tokenizer, 6, seed=1, optimal=0.0)
    for tree in wrong:
        node = tree.nodes[-1]
        assert len(tree.nodes) == 1 and node.terminated and tree.reward(node.id) == 0.0
        answer, given = str(tree.task.answer), parse_action(node.action).answer
        if answer.lstrip("-").isdigit():
            assert 0 < abs(int(given) - int(answer)) <= 3, "a near miss, not any number"


def test_demonstrations_are_reproducible(tokenizer) -> None:
    first, again = (demonstrations("treegym/Maze-v0", tokenizer, 4, seed=3, optimal=0.5)
                    for _ in range(2))
    timings = {"tool_seconds": True, "gen_seconds": True,  # the machine, not the episode
               "results": {"__all__": {"seconds"}}}
    assert ([[n.model_dump(exclude=timings) for n in t.nodes] for t in first]
            == [[n.model_dump(exclude=timings) for n in t.nodes] for t in again])


def test_env_without_demonstrations_fails_before_a_model_loads(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        require_demonstrations("treegym/Counter-v0")
    assert "treegym/Maze-v0" in str(info.value) and "init_weights" in str(info.value)
    config = TrainConfig(env="treegym/Counter-v0", policy="hf:/nonexistent/model",
                         warm_start={"steps": 1}, out=tmp_path / "run")
    with pytest.raises(ConfigError, match="has none"):
        train(config)  # a model load would fail on the missing path instead
    assert not (tmp_path / "run").exists()


def test_near_miss_keeps_non_integers() -> None:
    from treegym.demonstrations import near_miss

    rng = np.random.default_rng(0)
    assert near_miss("banana", rng) == "banana"
    assert near_miss("fig", rng, ["fig", "kiwi"]) == "kiwi"
    assert {int(near_miss("10", rng)) for _ in range(50)} <= {7, 8, 9, 11, 12, 13}


def test_arithmetic_demonstrations_work_it_out_with_python(tokenizer) -> None:
    pytest.importorskip("reasoning_gym")
    trees = demonstrations("treegym/RG-chain_sum-v0", tokenizer, 6, seed=2, optimal=0.5,
                           env_kwargs={"max_turns": 2})
    for tree in trees:
        first, last = tree.nodes[0], tree.nodes[-1]
        if tree.reward(last.id) == 1.0:
            assert len(tree.nodes) == 2 and first.calls[0].name == "python"
            assert first.observation.strip().splitlines()[0] == str(tree.task.answer)
        else:
            assert len(tree.nodes) == 1, "a near miss answers at once"
    assert {len(tree.nodes) for tree in trees} == {1, 2}
    one_turn = demonstrations("treegym/RG-chain_sum-v0", tokenizer, 3, seed=2, optimal=1.0,
                              env_kwargs={"max_turns": 1})
    assert all(len(tree.nodes) == 1 and tree.reward(0) == 1.0 for tree in one_turn)
