"""Chain (GRPO) against tree (Tree-GRPO) training at the same generated-token budget,
across seeds.

Every run starts from the same weights (one warm start, run once and saved; or
`init_weights`), and each stops once it has generated `token_budget` tokens, the cost
that matters on one machine. Each mode trains with seeds seed, seed + 1, ..., because
one run per mode can't tell a difference between the modes from the spread between
seeds. Each trained policy then plays held-out tasks. compare_report.py turns the runs
into the table (compare.json, compare.md) and the plot (reward_vs_tokens.png).

Layout of OUT: warm_start/ (the shared starting policy, an `hf:` checkpoint, with the
eval.json and eval.jsonl of its own held-out evaluation: the reward before any RL),
MODE/seed-S/ (a train() run folder plus eval.json and eval.jsonl), reward_vs_tokens.png,
compare.json, compare.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import ConfigError
from ..evaluate import EvalReport
from ..rollout.samplers import ChainSampler, TreeSampler
from .collector import SEEDS_PER_BATCH
from .compare_report import CompareReport, RunResult, markdown, plot, summarise
from .config import CompareConfig, TrainConfig, WarmStart
from .loop import Log, train, warm_start_weights

MODES = {
    "chain": (ChainSampler(n=4), "grpo"),
    "tree": (TreeSampler(m=2, n=2, l=1, k=3), "tree_grpo"),
}
EVAL_SEED = 0
"""Held-out tasks reset with seeds EVAL_SEED to EVAL_SEED + eval_episodes - 1, so from 0.

No training run of a comparison ever resets with one of them. Batch s of a run with seed
r resets with r·SEEDS_PER_RUN + (s + 1)·SEEDS_PER_BATCH + i, i >= 0 (collector.py), which
is at least SEEDS_PER_BATCH = 10000 whenever r >= 0, whatever the step count; warm-start
demonstrations reset from WARM_START_SEED = 10**8 upwards (loop.py). So seeds below
SEEDS_PER_BATCH are never trained on, provided every training seed is >= 0 and at most
SEEDS_PER_BATCH tasks are evaluated; `settings` checks both. It is also where `treegym
eval` starts by default, so `treegym eval ENV --policy hf:OUT/MODE/seed-S/policy
--episodes N --k K` with the run's --max-tokens and --temperature replays the evaluation.
"""


def settings(config: TrainConfig) -> CompareConfig:
    """`config.compare` (its defaults when null), once checked that a comparison can run:
    raises ConfigError before any model loads."""
    compare = config.compare or CompareConfig()
    if config.token_budget is None:
        raise ConfigError("--compare needs token_budget: the modes are compared at the same "
                          "number of generated tokens; set token_budget in the config")
    if compare.eval_episodes and config.seed < 0:
        raise ConfigError(f"compare.eval_episodes needs seed >= 0 (not {config.seed}): only "
                          "then are the held-out tasks' seeds ones no training batch uses")
    if compare.eval_episodes > SEEDS_PER_BATCH:
        raise ConfigError(f"compare.eval_episodes is at most {SEEDS_PER_BATCH}: above it the "
                          "held-out tasks would reset with seeds that training batches use")
    return compare


def compare(config: TrainConfig, log: Log | None = None) -> CompareReport:
    """Train every mode with `compare.seeds` seeds under `config.out/MODE/seed-S`, evaluate
    each on held-out tasks, and write the plot and the table to `config.out`."""
    setup = settings(config)
    start = config.policy if config.init_weights is None else None
    if config.warm_start.steps:
        path = warm_start_weights(config, config.out / "warm_start", log)
        config = config.model_copy(update={"init_weights": path, "warm_start": WarmStart()})
        start = f"hf:{path.parent}"
    start_eval = None
    if setup.eval_episodes and start is not None:  # init_weights alone has no hf: folder
        start_eval = held_out_eval(config, setup, start, config.out / "warm_start")
        if log:
            log({"phase": "eval", "mode": "start", "mean_reward": start_eval.mean_reward})
    runs: dict[str, list[RunResult]] = {mode: [] for mode in MODES}
    for seed in range(config.seed, config.seed + setup.seeds):
        for mode in MODES:  # seeds outermost: a stopped comparison has whole pairs
            runs[mode].append(_run(config, mode, seed, setup, log))
    assert config.token_budget is not None  # settings() checked it
    report = summarise(runs, env=config.env, token_budget=config.token_budget,
                       eval_episodes=setup.eval_episodes, eval_k=setup.eval_k,
                       start_eval=start_eval)
    plot(runs, config.out / "reward_vs_tokens.png")
    (config.out / "compare.json").write_text(report.model_dump_json(indent=2) + "\n")
    (config.out / "compare.md").write_text(markdown(report))
    return report


def _run(config: TrainConfig, mode: str, seed: int, setup: CompareConfig,
         log: Log | None) -> RunResult:
    """One mode's training run with `seed`, then its held-out evaluation."""
    rollout, advantage = MODES[mode]
    run = config.model_copy(update={"rollout": rollout, "advantage": advantage, "seed": seed,
                                    "out": config.out / mode / f"seed-{seed}"})
    tagged = (lambda record: log({"mode": mode, "seed": seed, **record})) if log else None
    started = time.perf_counter()
    history = train(run, log=tagged)
    wall_seconds = time.perf_counter() - started
    evaluation = (held_out_eval(run, setup, f"hf:{run.out / 'policy'}", run.out)
                  if setup.eval_episodes else None)
    if evaluation is not None and tagged is not None:
        tagged({"phase": "eval", "mean_reward": evaluation.mean_reward,
                f"pass_at_{evaluation.k}": evaluation.pass_at_k})
    return RunResult(mode=mode, seed=seed, out=run.out, wall_seconds=wall_seconds,
                     history=history, evaluation=evaluation)  # history: StepMetrics dumps


def held_out_eval(run: TrainConfig, setup: CompareConfig, spec: str, folder: Path
                  ) -> EvalReport:
    """Play `setup.eval_episodes` held-out tasks (EVAL_SEED says why they are) with policy
    `spec`, as `treegym eval --policy SPEC` would, under `run`'s env and sampling settings;
    the report goes to FOLDER/eval.json and the episodes to FOLDER/eval.jsonl."""
    from ..evaluate import evaluate
    from ..policy import SamplingParams, make_policy

    temperature = run.temperature if setup.eval_temperature is None else setup.eval_temperature
    policy = make_policy(spec)
    try:
        report = evaluate(
            run.env, policy, tasks=setup.eval_episodes, k=setup.eval_k, seed=EVAL_SEED,
            params=SamplingParams(max_tokens=run.max_new_tokens, temperature=temperature,
                                  seed=EVAL_SEED),
            env_kwargs=run.env_kwargs, out=folder / "eval.jsonl", policy_name=spec)
    finally:
        policy.close()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval.json").write_text(report.model_dump_json(indent=2) + "\n")
    return report
