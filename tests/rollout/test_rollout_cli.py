"""`treegym rollout` and `treegym export` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import treegym

from treegym import Tree, read_jsonl

pytest.importorskip("transformers", reason="rollouts with the tiny model need the torch extra")

SMALL = ["--policy", "tiny", "--tasks", "2", "--max-tokens", "8", "--env-opt", "max_turns=2"]


def test_rollout_prints_accounting_and_export_gives_chat(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    done = treegym("rollout", "treegym/Maze-v0", *SMALL, "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[-1])
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
