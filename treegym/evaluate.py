"""`treegym eval`: how well a policy does on an env, with error bars and pass@k.

Evaluation runs on the rollout engine with `ChainSampler(n=k)`: each chain is one
independent episode, the k chains of a task are its k attempts, and every task's
attempts are batched with the others. The figures come from the tree records alone, so
a saved `--out` file can be scored again without a model.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .parsing import parse_action
from .policy import Policy, SamplingParams
from .progress import Progress, silent
from .records import Tree
from .rollout import ChainSampler, collect

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the normal distribution."""


class EvalReport(BaseModel):
    """The figures `treegym eval --json` prints; the README documents each key."""

    env_id: str
    policy: str
    tasks: int
    k: int
    episodes: int = Field(description="tasks × k episodes run in all.")
    success_threshold: float
    mean_reward: float
    reward_std: float
    reward_ci95: tuple[float, float] | None = Field(
        description="Normal-approximation 95% interval of the mean; None below 2 episodes.")
    pass_at_1: float
    pass_at_k: float
    mean_turns: float
    mean_tokens: float = Field(description="Generated (action) tokens per episode.")
    failure_reasons: dict[str, int]
    wall_seconds: float
    out: str | None

    def rows(self) -> list[tuple[str, str]]:
        """(figure, value) for the summary table."""
        ci = "" if self.reward_ci95 is None else (
            f"  (95% CI {self.reward_ci95[0]:.3f} – {self.reward_ci95[1]:.3f})")
        rows = [
            ("episodes", f"{self.episodes} = {self.tasks} tasks × k={self.k}"),
            ("mean reward", f"{self.mean_reward:.3f}{ci}"),
            ("pass@1", f"{self.pass_at_1:.3f}"),
            (f"pass@{self.k}",
             f"{self.pass_at_k:.3f}  (pass: return >= {self.success_threshold:g})"),
            ("mean turns", f"{self.mean_turns:.2f}"),
            ("mean tokens", f"{self.mean_tokens:.1f} generated per episode"),
            ("wall seconds", f"{self.wall_seconds:.2f}"),
        ]
        rows += [(f"failed: {why}", str(count)) for why, count in self.failure_reasons.items()]
        return rows


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one task with `c` successes among `n` samples (Chen et al.).

    1 - C(n-c, k) / C(n, k): the chance that k of the n samples, drawn without
    replacement, include a success.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def failure_reason(tree: Tree, leaf: int) -> str:
    """Why an episode fell short, in words that group well when counted."""
    path = tree.path(leaf)
    last = path[-1]
    if last.error is not None:
        return f"error: {last.error.split(':', 1)[0]}"
    if last.truncated:
        if not any(node.calls for node in path):
            return "out of turns, no valid tool call"
        return "out of turns"
    if parse_action(last.action).answer is not None:
        return "wrong answer"
    return "ended below the threshold"


def report(
    trees: Sequence[Tree], *, env_id: str, policy: str, k: int, threshold: float = 1.0,
    wall_seconds: float = 0.0, out: str | None = None,
) -> EvalReport:
    """Score chain trees: one episode per tree, grouped by task for pass@k."""
    rewards: list[float] = []
    turns: list[int] = []
    tokens: list[int] = []
    reasons: Counter[str] = Counter()
    by_task: dict[int, list[bool]] = {}
    for tree in trees:
        for leaf in tree.leaves:
            path = tree.path(leaf)
            reward = tree.reward(leaf)
            passed = reward >= threshold
            rewards.append(reward)
            turns.append(len(path))
            tokens.append(sum(len(node.action_ids) for node in path))
            by_task.setdefault(tree.task_index, []).append(passed)
            if not passed:
                reasons[failure_reason(tree, leaf)] += 1
    n = len(rewards)
    mean = sum(rewards) / n if n else 0.0
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1)) if n > 1 else 0.0
    half = Z95 * std / math.sqrt(n) if n > 1 else None
    passes = [(len(outcomes), sum(outcomes)) for outcomes in by_task.values()]
    return EvalReport(
        env_id=env_id, policy=policy, tasks=len(by_task), k=k, episodes=n,
        success_threshold=threshold, mean_reward=mean, reward_std=std,
        reward_ci95=None if half is None else (mean - half, mean + half),
        pass_at_1=_mean([pass_at_k(m, c, 1) for m, c in passes]),
        pass_at_k=_mean([pass_at_k(m, c, min(k, m)) for m, c in passes]),
        mean_turns=_mean(turns), mean_tokens=_mean(tokens),
        failure_reasons=dict(reasons.most_common()), wall_seconds=wall_seconds, out=out,
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def evaluate(
    env_id: str,
    policy: Policy,
    *,
    tasks: int,
    k: int = 1,
    seed: int = 0,
    params: SamplingParams | None = None,
    env_kwargs: dict[str, Any] | None = None,
    threshold: float = 1.0,
    out: str | Path | None = None,
    policy_name: str | None = None,
    progress: Progress = silent,
) -> EvalReport:
    """Play `k` independent episodes of each of `tasks` tasks and score them.

    `progress` hears of episodes done and tokens generated; an episode is a one-leaf
    tree, so the rollout's separate leaf count would only repeat the episodes."""

    def episodes(done: int, total: int | None, what: str) -> None:
        if what != "leaves":
            progress(done, total, "episodes" if what == "trees" else what)

    result = collect(
        env_id, policy, ChainSampler(n=k), tasks, seed=seed, params=params,
        env_kwargs=env_kwargs, out=out, policy_name=policy_name, progress=episodes,
    )
    return report(
        result.trees, env_id=env_id, policy=policy_name or policy.backend, k=k,
        threshold=threshold, wall_seconds=result.stats.wall_seconds,
        out=None if out is None else str(out),
    )
