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
    compare: bool = typer.Option(False, help="Train chain and tree modes at the same token "
                                 "budget and plot reward against generated tokens."),
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

    overrides: dict[str, object] = {}
    if ray is not None:
        overrides["ray"] = {"address": ray} | ({"workers": workers} if workers else {})
    elif workers is not None:
        raise typer.BadParameter("--workers needs --ray ADDRESS")
    if weight_sync is not None:
        overrides["weight_sync"] = weight_sync
    cfg = load_config(config, **overrides)
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
            if record.get("phase") != "warm_start":
                done = record["generated"] if cfg.token_budget else record["step"] + 1
                label = f"{record.get('mode', 'train')} · reward {record['reward']:.3f}"
                bar.update(job, completed=done, description=label)

        if compare:
            histories = run_compare(cfg, log=show)
            summary = {mode: h[-1] if h else {} for mode, h in histories.items()}
        else:
            history = run_train(cfg, resume=resume, log=show)
            summary = history[-1] if history else {}
    print(json.dumps(summary, default=str))
