"""The figures of a chain-vs-tree comparison across seeds: the table and the plot.

Apart from compare.py, which runs the trainings, so that every figure comes from the
runs' own records (metrics.jsonl, eval.json) and can be checked without training.

Across seeds a figure is a mean with its standard error, the sample std (ddof 1) over
sqrt(seeds); one seed has no spread to measure, so its error is null ("n/a"), never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from ..evaluate import EvalReport
from .metrics import StepMetrics

FINAL_SHARE = 0.1
# A share of the budget, not a count of steps: a tree step costs more tokens than a chain
# step, and the comparison is at equal tokens.
FINAL_REWARD = (f"Mean batch reward over the steps in the last {FINAL_SHARE:.0%} of the "
                f"token budget (generated >= {1 - FINAL_SHARE:g} · token_budget), or the last "
                "step's when none reaches it.")


class Estimate(BaseModel):
    """A mean over seeds and its standard error."""

    mean: float
    se: float | None = Field(description="Sample std (ddof 1) / sqrt(n); null for n = 1.")
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {'n/a' if self.se is None else f'{self.se:.3f}'}"


def estimate(values: Sequence[float]) -> Estimate:
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
    return Estimate(mean=mean, se=se, n=n)


class RunResult(BaseModel):
    """One training run of a comparison, as compare() hands it over."""

    mode: str
    seed: int
    out: Path
    wall_seconds: float = Field(description="Wall time of train(), model load included.")
    history: list[StepMetrics] = Field(description="Its per-step records (metrics.jsonl).")
    evaluation: EvalReport | None = Field(None, description="Its held-out evaluation (eval.json).")


class RunSummary(BaseModel):
    """One run's row in compare.json."""

    seed: int
    out: str
    steps: int
    generated: int
    final_reward: float
    half_budget_reward: float
    leaves: int = Field(description="Kept leaves trained on, all steps.")
    wall_seconds: float
    eval_mean_reward: float | None
    eval_pass_at_k: float | None


class ModeSummary(BaseModel):
    """One mode's row of the table: its runs' figures, across seeds."""

    mode: str
    seeds: int
    final_reward: Estimate = Field(description=FINAL_REWARD)
    half_budget_reward: Estimate = Field(
        description="Batch reward interpolated at token_budget / 2 (the first step's when "
        "its batch alone passes that).")
    leaves_per_step: float = Field(description="Kept leaves per step, all steps and seeds.")
    tokens_per_leaf: float = Field(description="Generated tokens / kept leaves, all runs.")
    wall_seconds_per_run: float
    wall_seconds_total: float
    max_logprob_gap: float = Field(description="Largest logprob_gap of any step and seed.")
    eval_mean_reward: Estimate | None = Field(description="Held-out mean reward; null "
                                              "without eval_episodes.")
    eval_pass_at_k: Estimate | None
    runs: list[RunSummary]


class CompareReport(BaseModel):
    """compare.json: the table of `treegym train --compare`, one row per mode."""

    env: str
    token_budget: int
    final_share: float = Field(FINAL_SHARE, description="Share of the budget at its end "
                               "that the final reward averages over.")
    eval_episodes: int
    eval_k: int
    start_eval: EvalReport | None = Field(
        None, description="Held-out evaluation of the shared starting policy (the warm "
        "start, or the base policy): the reward before any RL, on the same tasks.")
    modes: dict[str, ModeSummary]


def final_reward(history: Sequence[StepMetrics], token_budget: int) -> float:
    late = [r.reward for r in history if r.generated >= (1 - FINAL_SHARE) * token_budget]
    return sum(late) / len(late) if late else history[-1].reward


def reward_at(history: Sequence[StepMetrics], tokens: float) -> float:
    """The batch reward at `tokens` generated, interpolated linearly between steps."""
    return float(np.interp(tokens, [r.generated for r in history],
                           [r.reward for r in history]))


def _run_summary(run: RunResult, token_budget: int) -> RunSummary:
    h = run.history
    return RunSummary(
        seed=run.seed, out=str(run.out), steps=len(h), generated=h[-1].generated,
        final_reward=final_reward(h, token_budget),
        half_budget_reward=reward_at(h, token_budget / 2), leaves=sum(r.leaves for r in h),
        wall_seconds=run.wall_seconds,
        eval_mean_reward=run.evaluation.mean_reward if run.evaluation else None,
        eval_pass_at_k=run.evaluation.pass_at_k if run.evaluation else None)


def summarise(runs: dict[str, list[RunResult]], *, env: str, token_budget: int,
              eval_episodes: int, eval_k: int, start_eval: EvalReport | None = None
              ) -> CompareReport:
    """The table: `runs` by mode, each run with at least one step."""
    modes = {}
    for mode, results in runs.items():
        rows = [_run_summary(run, token_budget) for run in results]
        evals = [run.evaluation for run in results if run.evaluation is not None]
        walls = [row.wall_seconds for row in rows]
        modes[mode] = ModeSummary(
            mode=mode, seeds=len(rows),
            final_reward=estimate([row.final_reward for row in rows]),
            half_budget_reward=estimate([row.half_budget_reward for row in rows]),
            leaves_per_step=sum(row.leaves for row in rows) / sum(row.steps for row in rows),
            tokens_per_leaf=sum(row.generated for row in rows) / sum(row.leaves for row in rows),
            wall_seconds_per_run=sum(walls) / len(walls), wall_seconds_total=sum(walls),
            max_logprob_gap=max(r.logprob_gap for run in results for r in run.history),
            eval_mean_reward=estimate([e.mean_reward for e in evals]) if evals else None,
            eval_pass_at_k=estimate([e.pass_at_k for e in evals]) if evals else None,
            runs=rows)
    return CompareReport(env=env, token_budget=token_budget, eval_episodes=eval_episodes,
                         eval_k=eval_k, start_eval=start_eval, modes=modes)


def table(report: CompareReport) -> tuple[list[str], list[list[str]]]:
    """Headers and one row of strings per mode, for the console and compare.md."""
    k = report.eval_k
    headers = ["mode", "seeds", "final reward", "reward at ½ budget", "leaves/step",
               "tokens/leaf", "wall s/run", "wall s total", "max logprob gap",
               "eval reward", f"eval pass@{k}"]
    rows = [[m.mode, str(m.seeds), str(m.final_reward), str(m.half_budget_reward),
             f"{m.leaves_per_step:.1f}", f"{m.tokens_per_leaf:.1f}",
             f"{m.wall_seconds_per_run:.1f}", f"{m.wall_seconds_total:.1f}",
             f"{m.max_logprob_gap:.2g}", str(m.eval_mean_reward or "—"),
             str(m.eval_pass_at_k or "—")] for m in report.modes.values()]
    if report.start_eval is not None:  # the policy both modes started from, before RL
        start = report.start_eval
        rows.insert(0, ["start", "—", *["—"] * 7, f"{start.mean_reward:.3f}",
                        f"{start.pass_at_k:.3f}"])
    return headers, rows


def markdown(report: CompareReport) -> str:
    """compare.md: the table as markdown, with what its figures mean, for docs/results.md."""
    headers, rows = table(report)
    lines = [f"| {' | '.join(headers)} |", f"|{' --- |' * len(headers)}",
             *(f"| {' | '.join(row)} |" for row in rows)]
    evaluated = (f"; eval: {report.eval_episodes} held-out tasks × k={report.eval_k}"
                 if report.eval_episodes else "")
    note = (f"{report.env}, {report.token_budget} generated tokens per run; mean ± s.e. "
            f"over seeds (n/a for one seed); final reward: mean batch reward over the last "
            f"{report.final_share:.0%} of the budget{evaluated}.")
    return "\n".join([*lines, "", note, ""])


def curve(histories: Sequence[Sequence[StepMetrics]]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokens, then the mean, min and max reward across `histories` at those tokens.

    The seeds' steps fall at different token counts, so each is interpolated onto every
    count any seed logged, but only where all seeds have data (from the latest first
    step to the earliest last one): nothing is extrapolated."""
    xs = [np.array([r.generated for r in h], dtype=float) for h in histories]
    ys = [np.array([r.reward for r in h]) for h in histories]
    lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
    grid = np.unique(np.concatenate(xs))
    grid = grid[(grid >= lo) & (grid <= hi)]
    at = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)])
    return grid, at.mean(axis=0), at.min(axis=0), at.max(axis=0)


def plot(runs: dict[str, list[RunResult]], path: Path) -> Path:
    """Mean reward across seeds against generated tokens per mode, with the min–max band
    across seeds when there are several (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, results in runs.items():
        grid, mean, low, high = curve([run.history for run in results])
        seeds = len(results)
        label = mode if seeds == 1 else f"{mode}: mean of {seeds} seeds, band min–max"
        (line,) = ax.plot(grid, mean, marker="o" if seeds == 1 else None, label=label)
        if seeds > 1:
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("generated tokens")
    ax.set_ylabel("mean reward of kept leaves")
    ax.set_title("chain (GRPO) vs tree (Tree-GRPO) at equal token budget")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
