"""The `treegym` command line. Bad input ends in one clear line and a non-zero exit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from .errors import TreegymError

app = typer.Typer(
    help="treegym: agent-environment gym whose rollouts are trees.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object/list on the last line.")


@app.command()
def envs(as_json: bool = JSON_OPTION) -> None:
    """List registered envs: description, tools, sandbox need and max turns."""
    from .registry import env_info, list_envs

    infos = [env_info(env_id) for env_id in list_envs()]
    if as_json:
        print(json.dumps([info.model_dump() for info in infos]))
        return
    table = Table("id", "description", "tools", "sandbox", "max turns")
    for info in infos:
        table.add_row(info.id, info.description, ", ".join(info.tools),
                      "yes" if info.needs_sandbox else "no", str(info.max_turns))
    console.print(table)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo.jsonl"), help="Where to write the two episodes."),
    seed: int = typer.Option(0, help="Seed of the maze."),
    size: int = typer.Option(5, help="Side of the maze."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Play a scripted Maze episode, fork it half-way, and let the branches diverge."""
    from .demo import run_demo

    result, episodes = run_demo(out, seed=seed, size=size)
    if not as_json:
        for name, episode in zip(("solver", "wanderer"), episodes, strict=True):
            console.rule(f"{name} branch: reward {episode.total_reward:g}")
            for turn in episode.turns:
                marker = "*" if turn.index == result.branch_turn else " "
                shown = turn.observation or f"<answer>{turn.answer}</answer>"
                console.print(f"{marker}{turn.index:>3} {shown}", markup=False)
        console.print(f"forked after turn {result.branch_turn - 1}; episodes written to {out}")
    print(result.model_dump_json())


bench_app = typer.Typer(help="Measure speed and memory; print the figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _print_report(report: dict[str, object], title: str, as_json: bool) -> None:
    if not as_json:
        table = Table("figure", "value", title=title)
        for key, value in report.items():
            table.add_row(key, str(value))
        console.print(table)
    print(json.dumps(report))


@bench_app.command("sandbox")
def bench_sandbox(
    files: int = typer.Option(200, min=1, help="Files in the forked workspace."),
    interp_mb: int = typer.Option(50, min=1, help="MiB of live data in the interpreter."),
    repeats: int = typer.Option(50, min=5, help="Local forks to time."),
    docker: bool = typer.Option(True, help="Also time Docker (skipped if no engine)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Local fork latency vs Docker fork vs a fresh container restored to the same state."""
    from .bench import sandbox_report

    report = sandbox_report(n_files=files, interp_mb=interp_mb, repeats=repeats, docker=docker)
    _print_report(report, "sandbox fork", as_json)


@bench_app.command("policy")
def bench_policy(
    n: int = typer.Option(8, min=1, help="Branches continued from the prefix."),
    prefix: int = typer.Option(512, min=16, help="Tokens in the shared prefix."),
    spec: str = typer.Option("tiny", "--policy", help="Policy SPEC, e.g. tiny or hf:PATH."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Continue N branches from a P-token prefix: fork+extend vs re-prefilling it."""
    from .policy.bench import bench_policy as measure

    _print_report(measure(n=n, prefix=prefix, spec=spec), "policy fork", as_json)


model_app = typer.Typer(help="Build and inspect local models.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("init")
def model_init(
    name: str = typer.Argument(..., help="Which model to build; only `tiny` for now."),
    path: Path = typer.Argument(..., help="Directory to write (Hugging Face layout)."),
) -> None:
    """Build a small random-init model and tokenizer offline, in Hugging Face layout."""
    from .policy import init_tiny

    if name != "tiny":
        raise typer.BadParameter(f"unknown model {name!r}; the one built offline is 'tiny'")
    console.print(f"wrote {init_tiny(path)}")


def main() -> None:
    """Entry point: turn every expected failure into one line on stderr."""
    try:
        code = app(standalone_mode=False)
    except TyperException as exc:
        hint = " (see `treegym --help`)" if getattr(exc, "exit_code", 1) == 2 else ""
        print(f"treegym: error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except TreegymError as exc:
        print(f"treegym: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        print("treegym: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
