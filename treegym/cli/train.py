"""`treegym train CONFIG`: the GRPO / Tree-GRPO loop, or `--compare` of both."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .base import JSON_OPTION, app, console


@app.command()
def train(
    config: Path | None = typer.Argument(None, help="YAML (or JSON) training config; "
                                  "docs/training.md lists every key."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint exactly."),
    compare: bool = typer.Option(False, help="Train chain and tree modes from one start to "
                                 "the same token budget, with each of compare.seeds seeds; "
                                 "evaluate, tabulate and plot reward against generated tokens."),
    seeds: int = typer.Option(None, min=1, help="With --compare: training seeds per mode "
                              "(seed, seed + 1, ...); overrides compare.seeds."),
    eval_episodes: int = typer.Option(None, min=0, help="With --compare: held-out tasks each "
                                      "trained policy plays (0 skips); overrides "
                                      "compare.eval_episodes."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="Roll out on Ray workers: local (start Ray here), auto, or "
                            "HOST:PORT; the learner stays in this process."),
    workers: int = typer.Option(None, min=1, help="Ray rollout workers (with --ray)."),
    weight_sync: str = typer.Option(None, help="sync, or one-step-off (rollouts run during "
                                    "the update, one version behind; needs --ray)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print every config key "
                                      "with its default and meaning, as YAML, and exit."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Collect → advantages → update → sync, with checkpoints and metrics."""
    if print_config:
        from ..train.reference import default_config_yaml

        print(default_config_yaml(), end="")
        return
    if config is None:
        raise typer.BadParameter("none given; `treegym train --print-config > train.yaml` "
                                 "writes one to fill in", param_hint="CONFIG")
    from ..train import load_config
    from ..train import train as run_train
    from ..train.compare import compare as run_compare
    from ..train.compare import settings as compare_settings

    overrides: dict[str, object] = {}
    given = {key: value for key, value in (("seeds", seeds), ("eval_episodes", eval_episodes))
             if value is not None}
    if given and not compare:
        raise typer.BadParameter(f"--{next(iter(given)).replace('_', '-')} needs --compare")
    if given:
        overrides["compare"] = given
    if compare and resume:
        raise typer.BadParameter("--compare can't resume: it runs each mode and seed afresh "
                                 "from the shared start; resume one run with `treegym train "
                                 "RUN_CONFIG --resume`", param_hint="--resume")
    if ray is not None:
        overrides["ray"] = {"address": ray} | ({"workers": workers} if workers else {})
    elif workers is not None:
        raise typer.BadParameter("--workers needs --ray ADDRESS")
    if weight_sync is not None:
        overrides["weight_sync"] = weight_sync
    cfg = load_config(config, **overrides)
    if compare:
        compare_settings(cfg)  # fail in one line, before the progress bar starts
    from rich.progress import Progress

    with Progress(console=console, disable=as_json) as bar:
        # the token budget, when set, is what ends a run (and each run of a comparison)
        job = bar.add_task("training", total=cfg.token_budget or cfg.steps)

        def show(record: dict[str, object]) -> None:
            if as_json:
                return
            shown = {k: v for k, v in record.items() if isinstance(v, (int, float, str))}
            bar.console.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in shown.items()), markup=False)
            if "phase" not in record:  # an RL step, not the warm start or an evaluation
                done = record["generated"] if cfg.token_budget else record["step"] + 1
                run = f"{record['mode']} seed {record['seed']}" if "mode" in record else "train"
                label = f"{run} · reward {record['reward']:.3f}"
                bar.update(job, completed=done, description=label)

        if compare:
            report = run_compare(cfg, log=show)
        else:
            history = run_train(cfg, resume=resume, log=show)
    if not compare:
        print(json.dumps(history[-1] if history else {}, default=str))
        return
    if not as_json:
        from rich.table import Table

        from ..train.compare_report import table

        headers, rows = table(report)
        shown = Table(*headers, title=f"{cfg.env}: chain vs tree at {cfg.token_budget} "
                      "generated tokens (mean ± s.e. over seeds)")
        for row in rows:
            shown.add_row(*row)
        console.print(shown)
        console.print(f"plot {cfg.out / 'reward_vs_tokens.png'}; table {cfg.out / 'compare.md'}"
                      f" and {cfg.out / 'compare.json'}", markup=False)
    print(report.model_dump_json())
