"""The real `treegym` executable: JSON output, and one-line errors with no traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import TREEGYM

from treegym import Episode, read_jsonl


def treegym(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert TREEGYM, "the treegym console script is not installed next to this python"
    return subprocess.run([TREEGYM, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_help_lists_commands() -> None:
    out = treegym("--help")
    assert out.returncode == 0 and "envs" in out.stdout and "demo" in out.stdout


def test_envs_json_is_a_list_on_the_last_line() -> None:
    out = treegym("envs", "--json")
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(rows, list)
    maze = next(r for r in rows if r["id"] == "treegym/Maze-v0")
    assert maze["tools"] == ["look", "move"] and maze["needs_sandbox"] is False


def test_envs_table_keeps_whole_ids_in_a_narrow_terminal() -> None:
    out = subprocess.run([TREEGYM, "envs"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    for env_id in ("treegym/BugFix-v0", "treegym/Maze-v0", "treegym/PyCalc-v0"):
        assert env_id in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 80


def test_demo_forks_and_writes_both_branches(tmp_path: Path) -> None:
    out = treegym("demo", "--json", "--out", str(tmp_path / "demo.jsonl"), "--seed", "4")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["solver_reward"], result["wanderer_reward"]) == (1.0, 0.0)
    solver, wanderer = read_jsonl(tmp_path / "demo.jsonl", Episode)
    shared = result["branch_turn"]
    assert solver.turns[:shared] == wanderer.turns[:shared]
    assert solver.turns[shared] != wanderer.turns[shared]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nope"], 2, "No such command 'nope'"),
        (["demo", "--size", "x"], 2, "Invalid value for '--size'"),
        (["demo", "--size", "1", "--out", "/tmp/treegym-cli-test.jsonl"], 1,
         "invalid options for MazeEnv: size: Input should be greater than or equal to 2"),
        (["demo", "--out", "/proc/forbidden/demo.jsonl"], 1, "cannot write"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], code: int, message: str) -> None:
    out = treegym(*args)
    assert out.returncode == code
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("treegym: error: ") and message in lines[0]
    assert "Traceback" not in out.stderr


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A folder of bad inputs: an empty records file and two invalid training configs."""
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "unknown-key.yaml").write_text("env: treegym/Maze-v0\nbogus_key: 1\n")
    (tmp_path / "bad.yaml").write_text("steps: many\nlr: 1\nwhat: 2\n")
    return tmp_path


# Each case fails before any model loads: "{in}" is the `inputs` folder.
BAD_INPUTS = [
    (["rollout", "treegym/Nope-v0", "--out", "{in}/r.jsonl"], 1,
     "unknown env id 'treegym/Nope-v0'. Registered: "),
    (["eval", "treegym/Nope-v0"], 1, "Run `treegym envs`"),
    (["play", "treegym/Nope-v0"], 1, "unknown env id 'treegym/Nope-v0'"),
    (["train", "{in}/missing.yaml"], 1, "cannot read config {in}/missing.yaml"),
    (["train", "{in}/unknown-key.yaml"], 1,
     "bogus_key: unknown key 'bogus_key'; no valid key is close to it; top-level keys: env, "),
    (["train", "{in}/bad.yaml"], 1, "invalid training config: env: Field required; steps: "),
    (["view", "{in}/missing.jsonl"], 1, "cannot read records from {in}/missing.jsonl"),
    (["export", "{in}/missing.jsonl"], 1, "cannot read records from {in}/missing.jsonl"),
    (["view", "{in}/empty.jsonl", "--static", "/proc/forbidden/v.html"], 1,
     "/proc/forbidden: No such file or directory"),
    (["export", "{in}/empty.jsonl", "--out", "/proc/forbidden/e.jsonl"], 1,
     "/proc/forbidden/e.jsonl: No such file or directory"),
    (["rollout", "treegym/Maze-v0", "--policy", "bogus", "--out", "{in}/r.jsonl"], 1,
     "unknown policy spec 'bogus'"),
    (["eval", "treegym/Maze-v0", "--policy", "bogus"], 1, "unknown policy spec 'bogus'"),
    (["play", "treegym/Maze-v0", "--seed", "-5"], 2, "Invalid value for '--seed'"),
    (["demo", "--seed", "-1", "--out", "{in}/d.jsonl"], 2, "Invalid value for '--seed'"),
    (["rollout", "treegym/Maze-v0", "--seed", "-1"], 2, "Invalid value for '--seed'"),
    (["eval", "treegym/Maze-v0", "--seed", "-1"], 2, "Invalid value for '--seed'"),
    (["rollout", "treegym/Maze-v0", "--branch", "bogus"], 2,
     "'bogus' is not one of 'random', 'entropy'"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUTS)
def test_more_bad_input_is_one_line_and_nonzero(
    inputs: Path, args: list[str], code: int, message: str
) -> None:
    out = treegym(*(a.replace("{in}", str(inputs)) for a in args), cwd=inputs)
    assert out.returncode == code
    lines = [line for line in (out.stderr + out.stdout).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("treegym: error: "), lines
    assert message.replace("{in}", str(inputs)) in lines[0]
    assert "Traceback" not in out.stderr + out.stdout


@pytest.mark.parametrize("args", [[], ["bench"], ["model"]])
def test_a_missing_command_prints_help_and_says_so(args: list[str]) -> None:
    out = treegym(*args)
    assert out.returncode == 2 and "Usage:" in out.stdout
    assert out.stderr.strip() == (
        f"treegym: error: missing command (see `{' '.join(['treegym', *args])} --help`)"
    )


def test_a_refused_value_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from pydantic import BaseModel

    from treegym.cli import base

    class Shape(BaseModel):
        m: int

    monkeypatch.setattr(base, "app", lambda **_: Shape(m="x"))
    with pytest.raises(SystemExit) as exited:
        base.main()
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "treegym: error: invalid Shape: m: Input should be a valid integer, unable to parse "
        "string as an integer\n"
    )


def test_model_init_tiny_writes_hf_layout(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="model init needs the torch extra")
    out = treegym("model", "init", "tiny", str(tmp_path / "tiny"))
    assert out.returncode == 0, out.stderr
    names = {p.name for p in (tmp_path / "tiny").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
