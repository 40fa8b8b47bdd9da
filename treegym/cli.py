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


def _parse_options(pairs: list[str]) -> dict[str, object]:
    """`--env-opt size=6 --env-opt shaped=true` as a dict; values parse as JSON if they can."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


@app.command()
def rollout(
    env_id: str = typer.Argument(..., help="Registered env id, e.g. treegym/Maze-v0."),
    policy: str = typer.Option("tiny", help="Policy SPEC: tiny, hf:PATH, vllm:PATH, "
                               "openai:URL#MODEL."),
    mode: str = typer.Option("tree", help="tree (Tree-GRPO) or chain (GRPO baseline)."),
    m: int = typer.Option(2, min=1, help="Trees per task (tree mode)."),
    n: int = typer.Option(2, min=1, help="Expansions per round; chains per task in chain mode."),
    rounds: int = typer.Option(1, "--l", min=0, help="Expansion rounds (tree mode)."),
    k: int = typer.Option(3, min=1, help="Leaves kept per tree (tree mode)."),
    branch: str = typer.Option("random", help="Expansion points: random or entropy."),
    tasks: int = typer.Option(4, min=1, help="Tasks to roll out."),
    seed: int = typer.Option(0, help="Tasks use reset seeds seed..seed+tasks-1."),
    max_tokens: int = typer.Option(64, min=1, help="Tokens per turn."),
    temperature: float = typer.Option(1.0, min=0.0),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable)."),
    out: Path = typer.Option(Path("runs/rollout.jsonl"), help="Trees are streamed here."),
    resume: bool = typer.Option(False, help="Carry on where OUT ends."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Collect tree (or chain) rollouts, streaming each finished tree to JSONL."""
    from rich.progress import Progress

    from .policy import SamplingParams, make_policy
    from .registry import spec as env_spec
    from .rollout import ChainSampler, TreeSampler, collect

    env_spec(env_id)
    if mode not in ("tree", "chain"):
        raise typer.BadParameter(f"--mode must be tree or chain, not {mode!r}")
    sampler = (TreeSampler(m=m, n=n, l=rounds, k=k, branch=branch) if mode == "tree"
               else ChainSampler(n=n))
    total = tasks * sampler.trees_per_task
    model = make_policy(policy)
    try:
        with Progress(console=console, transient=True, disable=as_json) as bar:
            job = bar.add_task(f"{mode} rollouts", total=total)
            result = collect(
                env_id, model, sampler, tasks, seed=seed, out=out, resume=resume,
                params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
                env_kwargs=_parse_options(env_opt), policy_name=policy,
                on_tree=lambda _: bar.advance(job),
            )
    finally:
        model.close()
    if not as_json:
        table = Table("figure", f"{mode} run", "chain-equivalent", title=f"{env_id} → {out}")
        for row in result.stats.rows():
            table.add_row(*row)
        console.print(table)
    print(result.stats.model_dump_json())


@app.command()
def export(
    file: Path = typer.Argument(..., help="Trees written by `treegym rollout`."),
    format: str = typer.Option("chat", help="Only `chat`: one trajectory per kept leaf."),
    out: Path = typer.Option(None, help="Write here instead of standard output."),
) -> None:
    """Export kept leaves as flat chat-message trajectories with rewards (JSONL)."""
    from .records import Tree, read_jsonl
    from .rollout.export import chat_records

    if format != "chat":
        raise typer.BadParameter(f"unknown format {format!r}; the one supported is 'chat'")
    lines = (json.dumps(rec) for tree in read_jsonl(file, Tree) for rec in chat_records(tree))
    if out is None:
        for line in lines:
            print(line)
        return
    out.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


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


@bench_app.command("rollout")
def bench_rollout(
    env: str = typer.Option("treegym/Maze-v0", "--env", help="Env id to roll out."),
    policy: str = typer.Option("tiny", help="Policy SPEC."),
    m: int = typer.Option(2, min=1), n: int = typer.Option(2, min=1),
    rounds: int = typer.Option(1, "--l", min=0),
    tasks: int = typer.Option(4, min=1),
    max_tokens: int = typer.Option(32, min=1),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Chain vs tree on the same tasks and policy, at an equal number of leaves per task."""
    from .registry import spec as env_spec
    from .rollout.bench import bench_rollout as measure

    env_spec(env)
    report = measure(env, spec=policy, m=m, n=n, l=rounds, tasks=tasks, max_tokens=max_tokens,
                     env_kwargs=_parse_options(env_opt))
    _print_report(report, "chain vs tree rollout", as_json)


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
    if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
        print("treegym: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
