"""`treegym rollout --ray HOST:PORT` against a `ray start --head` cluster on loopback:
the in-process trees come back, and once the cluster stops no Ray process is left."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from ray_helpers import RayHead, ray_processes, stop_ray, wait_until_gone
from test_cli import TREEGYM, treegym

from treegym import Tree, read_jsonl
from treegym.distributed.digest import tree_digest
from treegym.policy import SamplingParams, make_policy
from treegym.rollout import TreeSampler, collect

pytest.importorskip("ray")
pytest.importorskip("transformers", reason="rollouts with the tiny model need the torch extra")


def test_cli_rollout_on_a_cluster_by_address(ray_head: RayHead, tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    args = ["rollout", "treegym/Maze-v0", "--policy", "tiny", "--tasks", "2", "--m", "1",
            "--max-tokens", "8", "--seed", "4", "--env-opt", "max_turns=2", "--out", str(out),
            "--ray", ray_head.address, "--workers", "2", "--json"]
    # `ray start` turned token authentication on; a client naming an address must opt in
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    done = subprocess.run([TREEGYM, *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert stop_ray().returncode == 0
    assert wait_until_gone(ray_head.before) == {}, "Ray processes outlived `ray stop`"
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    trees = sorted(read_jsonl(out, Tree), key=lambda t: (t.task_index, t.tree_index))
    assert stats["trees"] == len(trees) == 2
    policy = make_policy("tiny")
    try:
        want = collect("treegym/Maze-v0", policy, TreeSampler(m=1, n=2, l=1), 2, seed=4,
                       params=SamplingParams(max_tokens=8, seed=4), policy_name="tiny",
                       env_kwargs={"max_turns": 2})
    finally:
        policy.close()
    assert [tree_digest(t) for t in trees] == [tree_digest(t) for t in want.trees]


def test_a_local_ray_run_leaves_no_ray_process(tmp_path: Path) -> None:
    """`--ray local` starts Ray for the run and stops all of it at the end."""
    before = ray_processes()
    done = treegym("rollout", "treegym/Maze-v0", "--policy", "tiny", "--tasks", "1", "--m", "1",
                   "--max-tokens", "4", "--env-opt", "max_turns=1",
                   "--out", str(tmp_path / "t.jsonl"), "--ray", "local", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert wait_until_gone(before) == {}, "Ray processes outlived the run"
