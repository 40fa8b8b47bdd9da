"""The real `treegym` executable: JSON output, and one-line errors with no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from treegym import Episode, read_jsonl

TREEGYM = shutil.which("treegym", path=str(Path(sys.executable).parent))


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


def test_model_init_tiny_writes_hf_layout(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="model init needs the torch extra")
    out = treegym("model", "init", "tiny", str(tmp_path / "tiny"))
    assert out.returncode == 0, out.stderr
    names = {p.name for p in (tmp_path / "tiny").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
