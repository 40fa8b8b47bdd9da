"""`ray_collect` on `ray.init(num_cpus=2)`: the in-process trees, a killed worker costs
nothing, resume and errors behave as in-process."""

from __future__ import annotations

import logging
import os
import signal
import time
from functools import partial
from pathlib import Path

import pytest
from helpers import call
from ray_helpers import ray_processes

from treegym import Tree, read_jsonl
from treegym.distributed import DistributedError, RayConfig, ray_collect
from treegym.distributed.bench import ray_figures
from treegym.distributed.digest import tree_digest
from treegym.policy import MenuPolicy, SamplingParams, load_tokenizer, make_policy, tiny_path
from treegym.rollout import ChainSampler, TreeSampler, collect
from treegym.sandboxes.local import worker_processes
from treegym.serve.child import serving

pytest.importorskip("ray")
pytest.importorskip("transformers", reason="rollouts need the torch extra for the tokenizer")

SMALL = dict(params=SamplingParams(max_tokens=8, seed=3), env_kwargs={"max_turns": 2})
PYCALC_MENU = [
    call("python", code="x = globals().get('x', 0) + 1\nprint(x)"),
    call("python", code="print(sum(range(10)))"),
    "<answer>45</answer>",
]


def menu_policy(actions: list[str]) -> partial[MenuPolicy]:
    """A policy factory Ray can ship to workers: treegym's class with a pickled tokenizer."""
    return partial(MenuPolicy, load_tokenizer(tiny_path()), actions)


def assert_same_trees(got: list[Tree], want: list[Tree]) -> None:
    assert [tree_digest(t) for t in got] == [tree_digest(t) for t in want]
    for a, b in zip(got, want, strict=True):
        for x, y in zip(a.nodes, b.nodes, strict=True):
            assert x.action_logprobs == pytest.approx(y.action_logprobs, abs=1e-3)


def test_ray_trees_are_the_in_process_trees(ray_local: object, tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    sampler = TreeSampler(m=1, n=2, l=1)
    got = ray_collect("treegym/Maze-v0", "tiny", sampler, 2, out=out, **SMALL,
                      ray=RayConfig(workers=2))
    policy = make_policy("tiny")
    try:
        want = collect("treegym/Maze-v0", policy, sampler, 2, policy_name="tiny", **SMALL)
    finally:
        policy.close()
    assert_same_trees(got.trees, want.trees)
    on_disk = sorted(read_jsonl(out, Tree), key=lambda t: (t.task_index, t.tree_index))
    assert [tree_digest(t) for t in on_disk] == [tree_digest(t) for t in want.trees]
    assert got.stats.leaves == want.stats.leaves == 2 * 1 * 3
    assert got.stats.generated_tokens == want.stats.generated_tokens


def test_a_killed_worker_loses_and_duplicates_nothing(ray_local: object, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL one worker mid-run: its chunks run elsewhere, each tree lands once, and
    the sandboxes of every worker, the dead one's included, are gone at the end."""
    out = tmp_path / "trees.jsonl"
    sampler, tasks = ChainSampler(n=2), 12
    sandboxes: set[int] = set()

    def kill_a_worker(_: Tree) -> None:
        if sandboxes:
            return
        workers = [p for p, cmd in ray_processes().items() if "ray::RolloutWorker" in cmd]
        deadline = time.monotonic() + 10  # kill it while it holds sandboxes
        while not worker_processes(ancestor=workers[0]) and time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in workers:
            sandboxes.update(worker_processes(ancestor=pid))
        os.kill(workers[0], signal.SIGKILL)

    options = dict(params=SamplingParams(seed=1), env_kwargs={"max_turns": 4})
    with caplog.at_level(logging.WARNING, logger="treegym.distributed.driver"):
        got = ray_collect("treegym/PyCalc-v0", menu_policy(PYCALC_MENU), sampler, tasks,
                          out=out, on_tree=kill_a_worker, **options,
                          ray=RayConfig(workers=2, calls_in_flight=2))
    assert sandboxes and "died" in caplog.text
    keys = [(t.task_index, t.tree_index) for t in read_jsonl(out, Tree)]
    assert len(keys) == len(set(keys)) == tasks * sampler.trees_per_task
    want = collect("treegym/PyCalc-v0", menu_policy(PYCALC_MENU)(), sampler, tasks, **options)
    assert_same_trees(got.trees, want.trees)
    deadline = time.monotonic() + 10
    while sandboxes & set(worker_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sandboxes & set(worker_processes()), "a worker's sandboxes outlived the run"


def test_ray_workers_hold_remote_envs(ray_local: object) -> None:
    """Workers that import treegym but run no sandbox: the worlds live in `treegym serve`,
    and the trees are the in-process ones, tool calls and forks of the interpreter included."""
    sampler, params = TreeSampler(m=1, n=2, l=1), SamplingParams(seed=1)
    with serving("treegym/PyCalc-v0", "--env-opt", "max_turns=3") as server:
        got = ray_collect(f"remote:{server.url}", menu_policy(PYCALC_MENU), sampler, 2,
                          params=params, ray=RayConfig(workers=2))
    want = collect("treegym/PyCalc-v0", menu_policy(PYCALC_MENU)(), sampler, 2,
                   params=params, env_kwargs={"max_turns": 3})
    assert any(r.output for t in got.trees for n in t.nodes for r in n.results)
    assert_same_trees([t.model_copy(update={"env_id": "treegym/PyCalc-v0",
                                            "env_kwargs": {"max_turns": 3}})
                       for t in got.trees], want.trees)


def test_resume_rolls_out_only_the_missing_trees(ray_local: object, tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    moves = [call("move", direction=d) for d in ("north", "south", "east", "west")]
    args = ("treegym/Maze-v0", menu_policy(moves), TreeSampler(m=2, n=1, l=1), 4)
    full = ray_collect(*args, out=out, **SMALL)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:20])  # three whole trees, one torn
    resumed = ray_collect(*args, out=out, resume=True, **SMALL)
    assert len(resumed.trees) == len(lines) - 3
    on_disk = sorted(read_jsonl(out, Tree), key=lambda t: (t.task_index, t.tree_index))
    assert [tree_digest(t) for t in on_disk] == [tree_digest(t) for t in full.trees]


def test_a_worker_that_cannot_start_is_one_clear_error(ray_local: object,
                                                        tmp_path: Path) -> None:
    with pytest.raises(DistributedError, match="rollout worker failed to start"):
        ray_collect("treegym/Maze-v0", f"hf:{tmp_path / 'no-such-model'}", ChainSampler(n=1),
                    2, ray=RayConfig(workers=1))


def test_bench_compares_one_and_two_workers(ray_local: object) -> None:
    figures = ray_figures("treegym/Maze-v0", spec="tiny", m=1, n=1, l=1, tasks=2,
                          max_tokens=8, env_kwargs={"max_turns": 2}, workers=2)
    assert figures["workers"] == [1, 2]
    assert len(figures["leaves_per_s"]) == 2 and min(figures["leaves_per_s"]) > 0
    assert figures["ray_same_trees"] and figures["ray_leaves"] == 2 * 2
