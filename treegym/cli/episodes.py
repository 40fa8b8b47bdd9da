"""Commands that run episodes: list envs, the demo, rollouts, export, play, eval and view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer
from rich.table import Column, Table

from .base import JSON_OPTION, app, console, env_options, parse_options


@app.command()
def envs(
    as_json: bool = JSON_OPTION,
    ignore_broken: bool = typer.Option(
        False, "--ignore-broken", help="List the envs that loaded even if a plugin failed "
        "(its error is still printed, as a warning)."),
) -> None:
    """List registered envs: description, tools, sandbox need and max turns.

    A plugin that failed to load is an error here: a listing without its envs would look
    complete, and the missing ids would only surface later as "unknown env id".
    """
    from ..registry import PluginError, env_info, list_envs, plugin_failures

    failures = plugin_failures()
    if failures and not ignore_broken:
        raise PluginError(
            f"{len(failures)} treegym plugin{'s' if len(failures) > 1 else ''} failed to "
            "load (pass --ignore-broken to list the envs that did):\n"
            + "\n".join(str(failure) for failure in failures))
    for failure in failures:
        typer.echo(f"treegym: warning: {failure}", err=True)
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
    from ..demo import run_demo

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
    max_live_trees: int = typer.Option(
        None, min=1, help="Trees in flight at most, so the first ones finish and reach OUT "
        "early (default: no bound; all trees share each batch and finish near the end)."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="Roll out on Ray workers: local (start Ray here), auto, "
                            "or HOST:PORT. SPEC may list openai: endpoints, comma-separated."),
    workers: int = typer.Option(2, min=1, help="Ray rollout workers (with --ray)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Collect tree (or chain) rollouts, streaming each finished tree to JSONL.

    Progress (trees, leaves, tokens/s) is drawn on stderr; stdout gets the accounting
    table, or with --json one JSON object."""
    from ..policy import SamplingParams, make_policy
    from ..progress import counter
    from ..registry import check_id
    from ..rollout import ChainSampler, TreeSampler, collect
    from .base import progress_bar

    check_id(env_id)
    if mode not in ("tree", "chain"):
        raise typer.BadParameter(f"--mode must be tree or chain, not {mode!r}")
    if ray is not None and max_live_trees is not None:
        raise typer.BadParameter("--max-live-trees bounds trees in this process; Ray workers "
                                 "already roll out one task per call and stream each back, "
                                 "so drop it with --ray")
    sampler = (TreeSampler(m=m, n=n, l=rounds, k=k, branch=branch) if mode == "tree"
               else ChainSampler(n=n))
    model = None if ray is not None else make_policy(policy)  # Ray workers build their own
    options = dict(
        seed=seed, out=out, resume=resume,
        params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
        env_kwargs=parse_options(env_opt), policy_name=policy,
    )
    try:
        with progress_bar() as progress:
            if model is None:
                from ..distributed import RayConfig, ray_collect

                result = ray_collect(
                    env_id, policy, sampler, tasks, ray=RayConfig(address=ray, workers=workers),
                    on_tree=counter(progress, tasks * sampler.trees_per_task, "trees"),
                    **options)
            else:
                result = collect(env_id, model, sampler, tasks, max_live_trees=max_live_trees,
                                 progress=progress, **options)
    finally:
        if model is not None:
            model.close()
    if as_json:
        print(result.stats.model_dump_json())
        return
    table = Table("figure", f"{mode} run", "chain-equivalent", title=f"{env_id} → {out}")
    for row in result.stats.rows():
        table.add_row(*row)
    console.print(table)


@app.command()
def export(
    file: Path = typer.Argument(..., help="Trees written by `treegym rollout`."),
    format: str = typer.Option("chat", help="Only `chat`: one trajectory per kept leaf."),
    out: Path = typer.Option(None, help="Write here instead of standard output."),
) -> None:
    """Export kept leaves as flat chat-message trajectories with rewards (JSONL)."""
    from ..records import Tree, read_jsonl
    from ..rollout.export import chat_records

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
    from ..play.tui import run
    from ..policy import SamplingParams

    env_kwargs = env_options(env_id, env_opt, sandbox)
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
    """Score a policy: mean reward with a 95% interval, pass@k, turns, tokens, failures.

    Progress is drawn on stderr; stdout gets the figures as a table, or with --json one
    JSON object."""
    from ..evaluate import evaluate
    from ..policy import SamplingParams, make_policy
    from ..registry import check_id
    from .base import progress_bar

    check_id(env_id)
    model = make_policy(policy)
    try:
        with progress_bar() as progress:
            result = evaluate(
                env_id, model, tasks=episodes, k=k, seed=seed, threshold=threshold,
                params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
                env_kwargs=parse_options(env_opt), out=out, policy_name=policy,
                progress=progress,
            )
    finally:
        model.close()
    if as_json:
        print(result.model_dump_json())
        return
    table = Table("figure", "value", title=f"{env_id} · {policy}"
                  + (f" → {out}" if out is not None else ""))
    for row in result.rows():
        table.add_row(*row)
    console.print(table)


@app.command()
def view(
    file: Path = typer.Argument(..., help="Tree records (JSONL), e.g. from rollout or play."),
    port: int = typer.Option(8765, min=0, max=65535, help="Loopback port; 0 picks a free one."),
    static: Path = typer.Option(None, "--static", help="Write one self-contained HTML file "
                                "here instead of serving."),
) -> None:
    """Look at tree records in a browser: collapsible trees, rewards, savings; offline."""
    from ..view import page_for, serve

    if static is not None:
        static.parent.mkdir(parents=True, exist_ok=True)
        static.write_text(page_for(file), encoding="utf-8")
        console.print(f"wrote {static}")
        return
    serve(file, port, lambda url: print(f"serving {file} at {url} (Ctrl-C to stop)",
                                        flush=True))
