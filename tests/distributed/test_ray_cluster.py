"""`treegym rollout|train --ray HOST:PORT` against `ray start --head` clusters on loopback,
with token authentication and without: the in-process trees come back, a withheld token
is one line and exit 2, and once the cluster stops no Ray process is left."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ray_helpers import RayHead, client_env, ray_processes, start_head, stop_ray, wait_until_gone
from test_cli import TREEGYM, treegym

from treegym import Tree, read_jsonl
from treegym.distributed.auth import find_token
from treegym.distributed.digest import tree_digest
from treegym.policy import SamplingParams, make_policy
from treegym.rollout import TreeSampler, collect

pytest.importorskip("ray")
pytest.importorskip("transformers", reason="rollouts with the tiny model need the torch extra")

ROLLOUT = ["rollout", "treegym/Maze-v0", "--policy", "tiny", "--tasks", "2", "--m", "1",
           "--max-tokens", "8", "--seed", "4", "--env-opt", "max_turns=2", "--workers", "2",
           "--json"]


def run(head: RayHead, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TREEGYM, *ROLLOUT, "--out", str(out), "--ray", head.address],
                          capture_output=True, text=True, env=env, timeout=300)


def in_process_digests() -> list[str]:
    policy = make_policy("tiny")
    try:
        want = collect("treegym/Maze-v0", policy, TreeSampler(m=1, n=2, l=1), 2, seed=4,
                       params=SamplingParams(max_tokens=8, seed=4), policy_name="tiny",
                       env_kwargs={"max_turns": 2})
    finally:
        policy.close()
    return [tree_digest(t) for t in want.trees]


def assert_same_trees(done: subprocess.CompletedProcess[str], out: Path) -> None:
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    trees = sorted(read_jsonl(out, Tree), key=lambda t: (t.task_index, t.tree_index))
    assert stats["trees"] == len(trees) == 2
    assert [tree_digest(t) for t in trees] == in_process_digests()


def test_a_token_cluster_by_address(tmp_path: Path) -> None:
    """Token authentication on: the token is found where `ray start` keeps it, or taken
    from RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN; withheld, the run is one line and exit 2."""
    stranger = tmp_path / "stranger"  # a HOME with no token in it
    stranger.mkdir()
    with start_head(tmp_path / "head", token=True) as head:
        assert head.token
        withheld = run(head, tmp_path / "withheld.jsonl", client_env(stranger))
        assert withheld.returncode == 2, withheld.stderr
        assert withheld.stderr.strip().splitlines() == [
            f"treegym: error: the Ray cluster at '{head.address}' uses token authentication "
            "and no token was found here: pass the cluster's token as RAY_AUTH_TOKEN=TOKEN "
            "or RAY_AUTH_TOKEN_PATH=FILE (`ray get-auth-token` on the head node prints it)"]
        assert not (tmp_path / "withheld.jsonl").exists()
        wrong = run(head, tmp_path / "wrong.jsonl", client_env(stranger, RAY_AUTH_TOKEN="0" * 32))
        assert wrong.returncode == 2
        assert "refused the token from RAY_AUTH_TOKEN" in wrong.stderr.splitlines()[-1]

        assert_same_trees(run(head, tmp_path / "home.jsonl", client_env(head.home)),
                          tmp_path / "home.jsonl")
        by_path = client_env(stranger, RAY_AUTH_TOKEN_PATH=str(head.home / ".ray/auth_token"))
        assert run(head, tmp_path / "path.jsonl", by_path).returncode == 0
        by_value = client_env(stranger, RAY_AUTH_TOKEN=head.token)
        assert run(head, tmp_path / "value.jsonl", by_value).returncode == 0
        # RAY_AUTH_MODE=token chosen by the user, with no token anywhere: Ray's own refusal
        forced = run(head, tmp_path / "forced.jsonl", client_env(stranger, RAY_AUTH_MODE="token"))
        assert forced.returncode == 2, forced.stderr
        assert forced.stderr.strip().splitlines()[-1].startswith(
            f"treegym: error: the Ray cluster at '{head.address}' needs a token: pass")

        config = tmp_path / "train.yaml"
        config.write_text(
            "env: treegym/Maze-v0\nenv_kwargs: {size: 2, max_turns: 2}\npolicy: tiny\n"
            "tasks_per_step: 2\nrollout: {mode: chain, n: 2}\nmax_new_tokens: 8\n"
            f"steps: 1\nout: {tmp_path / 'run'}\n")
        trained = subprocess.run(
            [TREEGYM, "train", str(config), "--ray", head.address, "--workers", "1", "--json"],
            capture_output=True, text=True, env=client_env(head.home), timeout=300)
        assert trained.returncode == 0, trained.stderr
        assert json.loads(trained.stdout.strip().splitlines()[-1])["step"] == 0
    assert wait_until_gone(head.before) == {}, "Ray processes outlived `ray stop`"


def test_a_cluster_without_auth_by_address(tmp_path: Path) -> None:
    """Token authentication off: a client that has a token sends it, and is let in."""
    with start_head(tmp_path / "head", token=False) as head:
        assert head.token is None
        client = tmp_path / "client"
        (client / ".ray").mkdir(parents=True)
        (client / ".ray/auth_token").write_text("0123456789abcdef" * 4)
        assert_same_trees(run(head, tmp_path / "t.jsonl", client_env(client)),
                          tmp_path / "t.jsonl")
        assert stop_ray().returncode == 0
    assert wait_until_gone(head.before) == {}, "Ray processes outlived `ray stop`"


def test_find_token_follows_rays_precedence(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert find_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray/auth_token").write_text("x" * 32 + "\n")
    assert find_token() == (str(tmp_path / ".ray/auth_token"), "x" * 32)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert find_token() is None  # a path that names nothing is not silently replaced
    monkeypatch.setenv("RAY_AUTH_TOKEN", "y" * 32)
    assert find_token() == ("RAY_AUTH_TOKEN", "y" * 32)


def test_a_local_ray_run_leaves_no_ray_process(tmp_path: Path) -> None:
    """`--ray local` starts Ray for the run and stops all of it at the end."""
    before = ray_processes()
    done = treegym("rollout", "treegym/Maze-v0", "--policy", "tiny", "--tasks", "1", "--m", "1",
                   "--max-tokens", "4", "--env-opt", "max_turns=1",
                   "--out", str(tmp_path / "t.jsonl"), "--ray", "local", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert wait_until_gone(before) == {}, "Ray processes outlived the run"
