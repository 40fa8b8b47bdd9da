"""docs/training.md and `treegym train --print-config` come from the models, and an
unknown config key is answered with the keys that were probably meant."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from treegym.cli import app
from treegym.train import ConfigError, TrainConfig, load_config
from treegym.train.keys import walk
from treegym.train.metrics import StepMetrics
from treegym.train.reference import REGENERATE, config_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def test_docs_training_md_is_the_generated_reference():
    assert DOC.read_text(encoding="utf-8") == config_reference(), (
        f"docs/training.md is out of date with the config models; regenerate it: {REGENERATE}")


def test_every_key_and_metric_has_a_meaning_in_the_reference():
    text = config_reference()
    keys = list(walk(TrainConfig))
    assert [k.label for k in keys if not k.field.description] == []
    assert [n for n, f in StepMetrics.model_fields.items() if not f.description] == []
    for key in keys:
        assert f"| `{key.path}` |" in text
    for name in StepMetrics.model_fields:
        assert f"| `{name}` |" in text
    # both rollout variants, with the tree's own keys and the real nested default
    assert "### rollout (mode: chain)" in text and "### rollout (mode: tree)" in text
    assert "| `rollout.m` | int, ≥ 1 | `2` |" in text
    assert "| `optim.lr` | float, > 0 | `0.0001` |" in text  # TrainConfig's, not OptimConfig's
    assert "start at seed 10000" in text


def dotted(data: dict, prefix: str = "") -> list[str]:
    out = []
    for name, value in data.items():
        out.append(prefix + name)
        if isinstance(value, dict) and name != "env_kwargs":
            out += dotted(value, f"{prefix}{name}.")
    return out


def test_print_config_is_a_commented_config_that_loads_once_env_is_set(tmp_path):
    result = CliRunner().invoke(app, ["train", "--print-config"])
    assert result.exit_code == 0, result.output
    text = result.output
    data = yaml.safe_load(text)
    assert data["env"] is None and data["rollout"] == {"mode": "chain", "n": 4}
    comments = " ".join(line.strip().removeprefix("#").strip() for line in text.splitlines()
                        if line.strip().startswith("#"))
    printed = [k for k in walk(TrainConfig) if k.section in ("", "loss", "optim", "warm_start")
               or k.mode == "chain"]
    assert len(printed) == len(TrainConfig.model_fields) + 2 + 4 + 4 + 4
    assert set(dotted(data)) == {k.path for k in printed}  # every key is there to edit
    for key in printed:
        assert " ".join(key.field.description.split()) in comments, key.path
    path = tmp_path / "train.yaml"
    path.write_text(text.replace("\nenv:\n", "\nenv: treegym/Maze-v0\n"))
    assert load_config(path) == TrainConfig(env="treegym/Maze-v0")


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("rollout: {mode: tree, mm: 1}",
     "rollout.tree.mm: unknown key 'mm'; did you mean m? "
     "keys of rollout (mode: tree): mode, m, n, l, k, branch"),
    ("rollout: {mode: chain, k: 3}",
     "rollout.chain.k: unknown key 'k'; did you mean rollout.k (mode: tree)? "
     "keys of rollout (mode: chain): mode, n"),
    ("ray: {adress: auto}", "ray.adress: unknown key 'adress'; did you mean address? "
     "keys of ray: address, workers, "),
    ("lr: 0.1", "lr: unknown key 'lr'; did you mean lora, optim.lr, warm_start.lr? "
     "top-level keys: env, env_kwargs, policy, "),
    ("tasks_per_stp: 2", "tasks_per_stp: unknown key 'tasks_per_stp'; did you mean "
     "tasks_per_step?"),
    ("bogus_key: 1", "bogus_key: unknown key 'bogus_key'; no valid key is close to it; "
     "top-level keys: env, "),
])
def test_unknown_keys_name_the_close_valid_ones(tmp_path, yaml_text, expected):
    path = tmp_path / "typo.yaml"
    path.write_text(f"env: treegym/Maze-v0\n{yaml_text}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: invalid training config:") and expected in text
    assert "Extra inputs" not in text
