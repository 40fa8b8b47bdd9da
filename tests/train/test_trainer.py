import json

import pytest
import torch

pytest.importorskip("transformers")
rollout = pytest.importorskip("treegym.rollout")

from train_helpers import assert_resume_is_exact, small  # noqa: E402

from treegym.policy import make_policy  # noqa: E402
from treegym.train import ConfigError, TrainConfig, compare, load_config  # noqa: E402


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: treegym/Maze-v0\nrollout: {mode: tree, m: 0}\nlr: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    text = str(err.value)
    assert "bad.yaml" in text and "rollout.tree.m" in text and "lr: Extra inputs" in text
    with pytest.raises(ValueError, match="needs rollout.mode 'tree'"):
        TrainConfig(env="treegym/Maze-v0", advantage="tree_grpo")


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("env: treegym/Maze-v0\nrollout: {mode: tree, m: 2, n: 2, l: 1, k: 3}\n"
                    "advantage: tree_grpo\nloss: {clip_high: 0.3}\n")
    config = load_config(path)
    assert config.rollout.mode == "tree" and config.loss.clip_high == 0.3


def test_resume_is_exact(tmp_path):
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


def test_compare_shares_one_warm_start_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    config = small(tmp_path, steps=3, token_budget=20,
                   warm_start={"steps": 1, "episodes": 1})
    records = []
    histories = compare(config, log=records.append)
    assert set(histories) == {"chain", "tree"} and all(histories.values())
    assert sum(r.get("phase") == "warm_start" for r in records) == 1
    assert (config.out / "warm_start.safetensors").exists()
    assert (config.out / "reward_vs_tokens.png").stat().st_size > 0
