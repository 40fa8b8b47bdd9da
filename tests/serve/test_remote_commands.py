"""`treegym eval`, `treegym train` and play sessions take a `remote:` env id."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import TREEGYM, call

from treegym import Tree, read_jsonl
from treegym.errors import ConfigError
from treegym.play import PlaySession
from treegym.serve.child import ServerProcess as Server
from treegym.serve.child import serving
from treegym.train.config import TrainConfig
from treegym.train.demos import require_demonstrations

MAZE = ["--env-opt", "size=2", "--env-opt", "max_turns=2", "--env-opt", "shaped=true"]


@pytest.fixture(scope="module")
def maze_server() -> Iterator[Server]:
    with serving("treegym/Maze-v0", *MAZE) as server:
        yield server


def treegym(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([TREEGYM, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_eval_scores_a_served_env(maze_server: Server) -> None:
    done = treegym("eval", f"remote:{maze_server.url}", "--policy", "tiny", "--episodes", "3",
                   "--k", "2", "--json")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["env_id"] == f"remote:{maze_server.url}" and result["episodes"] == 6
    assert result["mean_turns"] > 0


def test_train_runs_tree_grpo_on_a_served_env(maze_server: Server, tmp_path: Path) -> None:
    config = {"env": f"remote:{maze_server.url}", "policy": "tiny", "tasks_per_step": 2,
              "steps": 2, "max_new_tokens": 16, "advantage": "tree_grpo",
              "rollout": {"mode": "tree", "m": 1, "n": 2, "l": 1},
              "warm_start": {"steps": 0}, "seed": 0, "out": str(tmp_path / "run")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    treegym("train", str(tmp_path / "run.yaml"))
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [s["step"] for s in steps if "step" in s] == [0, 1]
    trees = list(read_jsonl(tmp_path / "run" / "trees.jsonl", Tree))
    assert len(trees) == 4 and all(len(t.leaves) == 3 for t in trees)  # trunk + n=2 forks
    assert all(any(n.origin is not None for n in t.nodes) for t in trees)


def test_warm_start_on_a_served_env_says_where_to_run_it(maze_server: Server) -> None:
    config = TrainConfig(env=f"remote:{maze_server.url}")
    with pytest.raises(ConfigError, match="served elsewhere.*init_weights"):
        require_demonstrations(config.env)


def test_play_forks_a_served_world(maze_server: Server) -> None:
    with PlaySession(f"remote:{maze_server.url}", seed=1) as s:
        s.step(call("look"))
        s.fork()
        s.step(call("move", direction="north"))
        moved = s.env.history[-1]
        s.go(0)
        assert len(s.env.history) == 1, "the first branch never saw the second's move"
        s.step(call("move", direction="north"))
        assert s.env.history[-1].observation == moved.observation
