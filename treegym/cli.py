"""The `treegym` command line. Bad input ends in one clear line and a non-zero exit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Column, Table
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
    # ids are what users copy into commands, so they are never cut short
    table = Table(Column("id", no_wrap=True), "description", "tools", "sandbox", "max turns")
    for info in infos:
        table.add_row(info.id, info.description, ", ".join(info.tools),
                      "yes" if info.needs_sandbox else "no", str(info.max_turns))
    console.print(table)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo.jsonl"), help="Where to write the two episodes."),
    seed: int = typer.Option(0, min=0, help="Seed of the maze."),
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
    branch: Literal["random", "entropy"] = typer.Option(
        "random", help="Expansion points: random or entropy."),
    tasks: int = typer.Option(4, min=1, help="Tasks to roll out."),
    seed: int = typer.Option(0, min=0, help="Tasks use reset seeds seed..seed+tasks-1."),
    max_tokens: int = typer.Option(64, min=1, help="Tokens per turn."),
    temperature: float = typer.Option(1.0, min=0.0),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable)."),
    out: Path = typer.Option(Path("runs/rollout.jsonl"), help="Trees are streamed here."),
    resume: bool = typer.Option(False, help="Carry on where OUT ends."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="Roll out on Ray workers: local (start Ray here), auto, "
                            "or HOST:PORT. SPEC may list openai: endpoints, comma-separated."),
    workers: int = typer.Option(2, min=1, help="Ray rollout workers (with --ray)."),
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
    model = None if ray is not None else make_policy(policy)  # Ray workers build their own
    try:
        with Progress(console=console, transient=True, disable=as_json) as bar:
            job = bar.add_task(f"{mode} rollouts", total=total)
            options = dict(
                seed=seed, out=out, resume=resume,
                params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
                env_kwargs=_parse_options(env_opt), policy_name=policy,
                on_tree=lambda _: bar.advance(job),
            )
            if model is None:
                from .distributed import RayConfig, ray_collect

                result = ray_collect(env_id, policy, sampler, tasks,
                                     ray=RayConfig(address=ray, workers=workers), **options)
            else:
                result = collect(env_id, model, sampler, tasks, **options)
    finally:
        if model is not None:
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


@app.command()
def play(
    env_id: str = typer.Argument(..., help="Registered env id, e.g. treegym/Maze-v0."),
    seed: int = typer.Option(0, min=0, help="Reset seed: which task you get."),
    policy: str = typer.Option(None, help="Policy SPEC for /model and /auto, e.g. tiny."),
    sandbox: str = typer.Option(None, help="local or docker (sandbox envs only)."),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable)."),
    max_tokens: int = typer.Option(128, min=1, help="Tokens per policy turn."),
    temperature: float = typer.Option(1.0, min=0.0, help="Policy sampling temperature."),
) -> None:
    """Be the agent: step, fork any turn, go back, let a model continue, save the tree."""
    from .play.tui import run
    from .policy import SamplingParams
    from .registry import env_info

    env_kwargs = _parse_options(env_opt)
    if sandbox is not None:
        if sandbox not in ("local", "docker"):
            raise typer.BadParameter(f"--sandbox must be local or docker, not {sandbox!r}")
        if not env_info(env_id).needs_sandbox:
            raise typer.BadParameter(f"{env_id} runs no sandbox; drop --sandbox")
        env_kwargs["sandbox"] = sandbox
    run(env_id, seed=seed, env_kwargs=env_kwargs, policy_spec=policy,
        params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed))


@app.command("eval")
def eval_(
    env_id: str = typer.Argument(..., help="Registered env id, e.g. treegym/Maze-v0."),
    policy: str = typer.Option("tiny", help="Policy SPEC: tiny, hf:PATH, vllm:PATH, "
                               "openai:URL#MODEL."),
    episodes: int = typer.Option(8, min=1, help="Tasks (reset seeds seed..seed+N-1)."),
    k: int = typer.Option(1, min=1, help="Episodes per task; pass@k is over these."),
    seed: int = typer.Option(0, min=0, help="First reset seed."),
    threshold: float = typer.Option(1.0, help="An episode passes with return >= this."),
    max_tokens: int = typer.Option(64, min=1, help="Tokens per turn."),
    temperature: float = typer.Option(1.0, min=0.0),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable)."),
    out: Path = typer.Option(None, help="Save the episodes here as tree records."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score a policy: mean reward with a 95% interval, pass@k, turns, tokens, failures."""
    from rich.progress import Progress

    from .evaluate import evaluate
    from .policy import SamplingParams, make_policy
    from .registry import spec as env_spec

    env_spec(env_id)
    model = make_policy(policy)
    try:
        with Progress(console=console, transient=True, disable=as_json) as bar:
            job = bar.add_task("episodes", total=episodes * k)
            result = evaluate(
                env_id, model, tasks=episodes, k=k, seed=seed, threshold=threshold,
                params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
                env_kwargs=_parse_options(env_opt), out=out, policy_name=policy,
                on_episode=lambda _: bar.advance(job),
            )
    finally:
        model.close()
    if not as_json:
        table = Table("figure", "value", title=f"{env_id} · {policy}"
                      + (f" → {out}" if out is not None else ""))
        for row in result.rows():
            table.add_row(*row)
        console.print(table)
    print(result.model_dump_json())


@app.command()
def view(
    file: Path = typer.Argument(..., help="Tree records (JSONL), e.g. from rollout or play."),
    port: int = typer.Option(8765, min=0, max=65535, help="Loopback port; 0 picks a free one."),
    static: Path = typer.Option(None, "--static", help="Write one self-contained HTML file "
                                "here instead of serving."),
) -> None:
    """Look at tree records in a browser: collapsible trees, rewards, savings; offline."""
    from .view import page_for, serve

    if static is not None:
        static.parent.mkdir(parents=True, exist_ok=True)
        static.write_text(page_for(file), encoding="utf-8")
        console.print(f"wrote {static}")
        return
    serve(file, port, lambda url: print(f"serving {file} at {url} (Ctrl-C to stop)",
                                        flush=True))


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML (or JSON) training config."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint exactly."),
    compare: bool = typer.Option(False, help="Train chain and tree modes at the same token "
                                 "budget and plot reward against generated tokens."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="Roll out on Ray workers: local (start Ray here), auto, or "
                            "HOST:PORT; the learner stays in this process."),
    workers: int = typer.Option(None, min=1, help="Ray rollout workers (with --ray)."),
    weight_sync: str = typer.Option(None, help="sync, or one-step-off (rollouts run during "
                                    "the update, one version behind; needs --ray)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Collect → advantages → update → sync, with checkpoints and metrics."""
    from .train import load_config
    from .train import train as run_train
    from .train.compare import compare as run_compare

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


@bench_app.command("learner")
def bench_learner(
    tasks: int = typer.Option(8, min=1), trees: int = typer.Option(2, min=1),
    leaves: int = typer.Option(3, min=1), repeats: int = typer.Option(1, min=1),
    device: str = typer.Option("cpu", help="cpu or cuda (bf16 on cuda)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Packed-tree training step vs one row per leaf, on a paper-shaped batch."""
    from .learn.bench import bench_learner as measure

    report = measure(tasks=tasks, trees=trees, leaves=leaves, repeats=repeats, device=device)
    _print_report(report, "packed tree vs per-leaf step", as_json)


@bench_app.command("rollout")
def bench_rollout(
    env: str = typer.Option("treegym/Maze-v0", "--env", help="Env id to roll out."),
    policy: str = typer.Option("tiny", help="Policy SPEC."),
    m: int = typer.Option(2, min=1), n: int = typer.Option(2, min=1),
    rounds: int = typer.Option(1, "--l", min=0),
    tasks: int = typer.Option(16, min=1),
    max_tokens: int = typer.Option(32, min=1),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable)."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="Also time tree rollouts on 1 and --workers Ray workers: "
                            "local, auto or HOST:PORT."),
    workers: int = typer.Option(2, min=1, help="Ray workers compared with one (with --ray)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Chain vs tree on the same tasks and policy, at an equal number of leaves per task."""
    from .registry import spec as env_spec
    from .rollout.bench import bench_rollout as measure

    env_spec(env)
    shape = dict(spec=policy, m=m, n=n, l=rounds, tasks=tasks, max_tokens=max_tokens,
                 env_kwargs=_parse_options(env_opt))
    ray_report = {}
    if ray is not None:  # first, so a missing Ray fails before the in-process runs
        from .distributed.bench import ray_figures

        ray_report = ray_figures(env, address=ray, workers=workers, **shape)
    report = measure(env, **shape) | ray_report
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


sandbox_app = typer.Typer(help="Set up sandbox backends.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("build-image")
def sandbox_build_image(
    tag: str = typer.Option(None, help="Image tag; default: the one the docker backend uses."),
    rebuild: bool = typer.Option(
        False, help="Run debootstrap again instead of reusing the cached rootfs tarball."),
) -> None:
    """Build the docker backend's base image locally: debootstrap, then `docker import`.

    No registry is needed. The rootfs tarball is cached under ~/.cache/treegym, so a
    second build takes seconds. Prints the tag, which is what `open_sandbox("docker")`
    and `--sandbox docker` use.
    """
    from .sandboxes import SandboxError
    from .sandboxes.docker_image import DEFAULT_TAG, docker_client, ensure_image

    try:
        client = docker_client()
        built = ensure_image(tag or DEFAULT_TAG, client=client, rebuild=rebuild)
        size_mb = client.images.get(built).attrs["Size"] / 2**20
    except SandboxError as e:
        raise TreegymError(str(e)) from None
    console.print(f"{built} ({size_mb:.0f} MB)")


def _one_line(message: str) -> str:
    """`message` on a single line: scripts and users grep for exactly one error line.

    Multi-line messages (a config's field problems, one per line) keep every part,
    joined with "; " after a heading that ends in ":".
    """
    head, *rest = [line.strip() for line in message.splitlines() if line.strip()] or [""]
    if not rest:
        return head
    return f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join([head, *rest])


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"treegym: error: {_one_line(message)}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point: turn every expected failure into one line on stderr.

    Bad input (typer's usage errors, treegym's own errors, a path that can't be used, a
    value a pydantic model refuses) is the user's to fix, so it gets one line; anything
    else is a bug and keeps its traceback.
    """
    try:
        code = app(standalone_mode=False)
    except TyperException as exc:
        code = getattr(exc, "exit_code", 1)
        ctx = getattr(exc, "ctx", None)
        # typer prints the help of a group run without a command itself and leaves the
        # message empty (it tells this error apart by name too, to avoid a private import)
        missing = type(exc).__name__ == "NoArgsIsHelpError"
        message = "missing command" if missing else exc.format_message()
        hint = f" (see `{ctx.command_path if ctx else 'treegym'} --help`)" if code == 2 else ""
        _fail(f"{message}{hint}", code)
    except TreegymError as exc:
        _fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                             for e in exc.errors())
        _fail(f"invalid {exc.title}: {problems}")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}; check that the path exists and you may use it")
    except (typer.Abort, KeyboardInterrupt):
        print("treegym: interrupted", file=sys.stderr)
        sys.exit(130)
    if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
        print("treegym: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
