"""`treegym eval`: the unbiased pass@k, the figures from records, and the --json keys."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
from test_cli import TREEGYM, treegym

from treegym import Tree, read_jsonl
from treegym.evaluate import EvalReport, pass_at_k, report
from treegym.records import Node, Task

DOCUMENTED_KEYS = {
    "env_id", "policy", "tasks", "k", "episodes", "success_threshold", "mean_reward",
    "reward_std", "reward_ci95", "pass_at_1", "pass_at_k", "mean_turns", "mean_tokens",
    "failure_reasons", "wall_seconds", "out",
}


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(10, 0, 3) == 0.0
    assert pass_at_k(10, 10, 3) == 1.0
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert pass_at_k(4, 1, 4) == 1.0
    # by enumeration: 1 - P(no success among 2 of 5 drawn without replacement, 2 succeed)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - (3 * 2) / (5 * 4))
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def chain(task: int, reward: float, how: str, tokens: int = 4) -> Tree:
    """A one-episode tree of two turns ending as `how` (answer, truncated, error)."""
    first = Node(id=0, parent=None, depth=1, action_ids=[1] * tokens,
                 action_logprobs=[0.0] * tokens, action='<tool_call>{"name": "look"}</tool_call>',
                 calls=[{"id": "call_0", "name": "look", "arguments": {}}])
    last = Node(id=1, parent=0, depth=2, action_ids=[1] * tokens,
                action_logprobs=[0.0] * tokens, reward=reward,
                action="<answer>3</answer>" if how == "answer" else "junk",
                terminated=how == "answer", truncated=how == "truncated",
                error="SandboxDead: gone" if how == "error" else None)
    return Tree(env_id="x", task=Task(id=f"t{task}", prompt="p"), task_index=task,
                tree_index=0, seed=task, mode="chain", policy="p", prompt_ids=[1, 2],
                nodes=[first, last], kept=[1])


def test_report_figures_from_records() -> None:
    trees = [chain(0, 1.0, "answer"), chain(0, 0.0, "answer"),
             chain(1, 0.0, "truncated"), chain(1, 0.0, "error")]
    r = report(trees, env_id="x", policy="p", k=2)
    assert (r.tasks, r.episodes) == (2, 4)
    assert r.mean_reward == 0.25 and r.reward_std == pytest.approx(0.5)
    half = 1.959963984540054 * 0.5 / 2
    assert r.reward_ci95 == pytest.approx((0.25 - half, 0.25 + half))
    assert r.pass_at_1 == pytest.approx((0.5 + 0.0) / 2)
    assert r.pass_at_k == pytest.approx((1.0 + 0.0) / 2)
    assert r.mean_turns == 2 and r.mean_tokens == 8
    assert r.failure_reasons == {"wrong answer": 1, "out of turns": 1, "error: SandboxDead": 1}
    assert report(trees[:1], env_id="x", policy="p", k=1).reward_ci95 is None
    assert not math.isnan(report([], env_id="x", policy="p", k=1).mean_reward)


def test_eval_json_on_maze_with_tiny(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the tiny policy needs the torch extra")
    out = tmp_path / "traces.jsonl"
    done = treegym("eval", "treegym/Maze-v0", "--policy", "tiny", "--episodes", "2", "--k", "2",
                   "--max-tokens", "8", "--env-opt", "max_turns=2", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == DOCUMENTED_KEYS == set(EvalReport.model_fields)
    assert (result["tasks"], result["k"], result["episodes"]) == (2, 2, 4)
    assert 0.0 <= result["pass_at_1"] <= result["pass_at_k"] <= 1.0
    assert sum(result["failure_reasons"].values()) <= 4 and result["mean_turns"] <= 2
    trees = list(read_jsonl(out, Tree))
    assert len(trees) == 4 and result["out"] == str(out)
    assert result["mean_tokens"] == sum(len(n.action_ids) for t in trees for n in t.nodes) / 4


def test_eval_table_and_progress_bar_on_maze_with_tiny(tmp_path: Path) -> None:
    """Without --json: the progress bar runs on stderr, and stdout holds the table alone,
    with the figures of the saved episodes. FORCE_COLOR makes rich draw for a terminal,
    as a person would see it."""
    pytest.importorskip("transformers", reason="the tiny policy needs the torch extra")
    assert TREEGYM, "the treegym console script is not installed next to this python"
    out = tmp_path / "traces.jsonl"
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([TREEGYM, "eval", "treegym/Maze-v0", "--policy", "tiny", "--episodes",
                           "1", "--k", "2", "--max-tokens", "8", "--env-opt", "max_turns=2",
                           "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout)
    bars = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stderr)
    assert re.search(r"episodes .* 2/2 ", bars), "the progress bar ran to its end"
    assert re.search(r"generated tokens .* \d+", bars)
    assert "{" not in screen, "JSON goes to stdout only with --json"
    result = report(list(read_jsonl(out, Tree)), env_id="treegym/Maze-v0", policy="tiny", k=2)
    low, high = result.reward_ci95
    rows = [rf"mean reward +│ {result.mean_reward:.3f}  \(95% CI {low:.3f} – {high:.3f}\)",
            rf"pass@2 +│ {result.pass_at_k:.3f}  \(pass: return >= 1\)"]
    assert result.failure_reasons, "the random tiny policy fails every episode"
    rows += [rf"failed: {re.escape(why)} +│ {count} "
             for why, count in result.failure_reasons.items()]
    for row in rows:
        assert re.search(rf"│ {row}", screen), (row, screen)


def test_readme_documents_every_key() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("**`treegym eval ID"):readme.index("**`treegym view FILE")]
    assert {key for key in DOCUMENTED_KEYS if f"`{key}`" not in section} == set()
