import json

import pytest
import torch

pytest.importorskip("transformers")
rollout = pytest.importorskip("treegym.rollout")

from train_helpers import assert_resume_is_exact, small  # noqa: E402

from treegym.learn import ESTIMATORS  # noqa: E402
from treegym.learn.advantages import node_advantages  # noqa: E402
from treegym.policy import make_policy  # noqa: E402
from treegym.records import Tree, read_jsonl  # noqa: E402
from treegym.train import ConfigError, TrainConfig, load_config, train  # noqa: E402
from treegym.train import loop as train_loop  # noqa: E402


def trained_trees(run) -> dict[int, list[Tree]]:
    """trees.jsonl by step: in sync mode a batch's policy_version is its step."""
    steps: dict[int, list[Tree]] = {}
    for tree in read_jsonl(run / "trees.jsonl", Tree):
        steps.setdefault(tree.policy_version, []).append(tree)
    return steps


def assert_trained_advantages(steps: dict[int, list[Tree]], advantage: str) -> None:
    """Each step's trees carry what the estimator gives for that batch, recomputed here."""
    for batch in steps.values():
        for tree, leaves in zip(batch, ESTIMATORS[advantage](batch), strict=True):
            assert {leaf: tree.advantages[leaf] for leaf in tree.kept} == leaves
            assert tree.advantages == node_advantages(tree, leaves)


def reward_leaves(monkeypatch) -> None:
    """Give leaves unequal rewards as they are collected: the tiny random policy never
    reaches a goal, and all-zero rewards would make every advantage 0."""
    make_collector = train_loop.make_collector

    def rewarded(config, actor):
        collector = make_collector(config, actor)
        collect = collector.collect

        def collect_rewarded(step):
            batch, generated = collect(step)
            for tree in batch:
                for node in tree.nodes:
                    node.reward = float(node.is_leaf * (node.id % 3 + tree.tree_index))
            return batch, generated

        collector.collect = collect_rewarded
        return collector

    monkeypatch.setattr(train_loop, "make_collector", rewarded)


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: treegym/Maze-v0\nrollout: {mode: tree, m: 0}\nlr: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    text = str(err.value)
    assert "bad.yaml" in text and "rollout.tree.m" in text
    assert "lr: unknown key 'lr'; did you mean lora, optim.lr, warm_start.lr?" in text
    with pytest.raises(ValueError, match="needs rollout.mode 'tree'"):
        TrainConfig(env="treegym/Maze-v0", advantage="tree_grpo")


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("env: treegym/Maze-v0\nrollout: {mode: tree, m: 2, n: 2, l: 1, k: 3}\n"
                    "advantage: tree_grpo\nloss: {clip_high: 0.3}\n")
    config = load_config(path)
    assert config.rollout.mode == "tree" and config.loss.clip_high == 0.3


def test_resume_is_exact(tmp_path, monkeypatch):
    reward_leaves(monkeypatch)
    config = small(tmp_path)
    weights_after = assert_resume_is_exact(config)
    run = config.out
    # the trained policy is a Hugging Face checkpoint that `hf:DIR` loads as it is
    policy = make_policy(f"hf:{run / 'policy'}")
    try:
        loaded = dict(policy.model.named_parameters())
        assert loaded.keys() <= weights_after.keys()
        assert all(torch.equal(loaded[k].detach(), weights_after[k]) for k in loaded)
    finally:
        policy.close()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1]
    trees = trained_trees(run)  # the resumed step 1 replaced the first run's, once
    assert list(trees) == [0, 1] and len(trees[0]) == len(trees[1]) == 4
    assert_trained_advantages(trees, "grpo")


def test_trees_log_has_the_trained_advantages(tmp_path, monkeypatch):
    reward_leaves(monkeypatch)
    config = small(tmp_path, rollout={"mode": "tree", "m": 1, "n": 2, "l": 1, "k": 3},
                   advantage="tree_grpo", tasks_per_step=1, steps=1)
    history = train(config)
    assert history[0]["zero_variance_groups"] == 0.0  # the one task's rewards differ
    trees = trained_trees(config.out)
    assert list(trees) == [0]
    assert_trained_advantages(trees, "tree_grpo")
    values = [a for tree in trees[0] for a in tree.advantages.values()]
    assert any(values), "the rewards differ, so some advantage is not 0"
    shared = [n for tree in trees[0] for n in tree.nodes
              if not n.is_leaf and sum(n in tree.path(leaf) for leaf in tree.kept) > 1]
    assert shared, "an inner node on several kept paths gets their sum"
