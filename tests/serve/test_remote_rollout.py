"""A rollout against `treegym serve` grows the trees an in-process rollout grows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import TREEGYM

from treegym.distributed.digest import tree_digest
from treegym.records import Tree, read_jsonl
from treegym.serve.child import ServerProcess as Server

ROLLOUT = ["--policy", "tiny", "--mode", "tree", "--m", "1", "--n", "2", "--l", "1",
           "--tasks", "2", "--max-tokens", "16", "--seed", "3", "--json"]


def rollout(env_id: str, out: Path, *options: str) -> list[Tree]:
    done = subprocess.run([TREEGYM, "rollout", env_id, *ROLLOUT, *options, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["trees"] == 2
    return sorted(read_jsonl(out, Tree), key=lambda t: (t.task_index, t.tree_index))


def test_remote_rollout_gives_the_in_process_trees(pycalc_server: Server,
                                                   tmp_path: Path) -> None:
    remote_id = f"remote:{pycalc_server.url}"
    remote = rollout(remote_id, tmp_path / "remote.jsonl")
    local = rollout("treegym/PyCalc-v0", tmp_path / "local.jsonl", "--env-opt", "max_turns=16")
    assert {t.env_id for t in remote} == {remote_id}  # a tree says where it was rolled out
    assert sum(len(t.nodes) for t in remote) > 2 * 2  # it branched: a trunk and its forks
    # the served env's options live in the server's /metadata, not in the client's run
    same_place = [t.model_copy(update={"env_id": "treegym/PyCalc-v0",
                                       "env_kwargs": {"max_turns": 16}}) for t in remote]
    assert [tree_digest(t) for t in same_place] == [tree_digest(t) for t in local]
