"""`treegym rollout` and `treegym export` as a user runs them, Ctrl-C included."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_cli import TREEGYM, treegym

from treegym import Tree, read_jsonl
from treegym.sandboxes.local import worker_processes

pytest.importorskip("transformers", reason="rollouts with the tiny model need the torch extra")

SMALL = ["--policy", "tiny", "--tasks", "2", "--max-tokens", "8", "--env-opt", "max_turns=2"]


def test_rollout_prints_accounting_and_export_gives_chat(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    done = treegym("rollout", "treegym/Maze-v0", *SMALL, "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()  # --json: the JSON object and nothing else
    stats = json.loads(line)
    trees = list(read_jsonl(out, Tree))
    assert stats["trees"] == len(trees) == 4 and stats["leaves"] == 12
    assert stats["generated_tokens"] == sum(len(n.action_ids) for t in trees for n in t.nodes)
    assert stats["chain_generated_tokens"] >= stats["generated_tokens"]
    exported = treegym("export", str(out))
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == sum(len(t.kept) for t in trees)
    roles = [message["role"] for message in rows[0]["messages"]]
    assert roles[:2] == ["user", "assistant"]
    assert {"reward", "tools", "env_id"} <= set(rows[0])


def test_ctrl_c_leaves_whole_trees_and_no_sandboxes(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    before = set(worker_processes())
    args = ["rollout", "treegym/PyCalc-v0", "--mode", "chain", "--n", "2", "--policy", "tiny",
            "--tasks", "400", "--max-tokens", "8", "--env-opt", "max_turns=3", "--out", str(out)]
    # A user's terminal delivers SIGINT with its default action; a background CI shell may have
    # left it ignored, and children inherit that, so restore the default in the child.
    proc = subprocess.Popen([TREEGYM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not out.exists() or not out.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "treegym: interrupted"
    finished = list(read_jsonl(out, Tree))
    assert 1 <= len(finished) < 800
    time.sleep(0.5)
    assert set(worker_processes()) <= before, "sandbox workers outlived the interrupted run"
    resumed = treegym(*args[:-2], "--tasks", "2", "--out", str(out), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    keys = [(t.task_index, t.tree_index) for t in read_jsonl(out, Tree)]
    assert len(keys) == len(set(keys)) and {(i, j) for i in range(2) for j in range(2)} <= set(keys)


def test_without_json_a_table_on_stdout_and_progress_on_stderr(tmp_path: Path) -> None:
    done = treegym("rollout", "treegym/Maze-v0", "--policy", "tiny", "--mode", "chain",
                   "--n", "1", "--tasks", "1", "--max-tokens", "4", "--env-opt", "max_turns=1",
                   "--out", str(tmp_path / "trees.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "generated tokens / s" in done.stdout and "{" not in done.stdout
    assert re.search(r"trees .* 1/1", done.stderr) and re.search(r"leaves .* 1/1", done.stderr)
    assert re.search(r"generated tokens +\d+", done.stderr)


def test_ctrl_c_with_max_live_trees_keeps_the_first_trees(tmp_path: Path) -> None:
    """With at most 2 trees in flight the first tasks finish early; Ctrl-C once some are
    in the file keeps them whole, and leaves no process of the run behind. Eight tasks
    of two trees would take many times longer than the poll that sends the signal."""
    out = tmp_path / "trees.jsonl"
    args = ["rollout", "treegym/Maze-v0", "--policy", "tiny", "--tasks", "8",
            "--max-live-trees", "2", "--max-tokens", "8", "--env-opt", "max_turns=3",
            "--out", str(out)]
    proc = subprocess.Popen([TREEGYM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,  # its own group, checked below
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None and (
            not out.exists() or "\n" not in out.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "treegym: interrupted"
    assert stdout == "", "an interrupted run prints no summary"
    text = out.read_text()
    assert text.endswith("\n")
    trees = list(read_jsonl(out, Tree))
    assert 1 <= len(trees) < 8 * 2
    assert len({(t.task_index, t.tree_index) for t in trees}) == len(trees)
    assert all(len(t.leaves) == 3 and len(t.kept) == 3 for t in trees), "whole trees only"
    # trees start in task order, two at a time: none finished beyond the first in flight
    assert max(t.task_index * 2 + t.tree_index for t in trees) < len(trees) + 2
    with pytest.raises(ProcessLookupError):  # nothing of the run's process group is left
        os.killpg(proc.pid, 0)
