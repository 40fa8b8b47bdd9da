"""`treegym bench NAME`: measure speed and memory and print the figures."""

from __future__ import annotations

import typer

from .base import JSON_OPTION, app, parse_options, print_report, progress_bar

bench_app = typer.Typer(help="Measure speed and memory; print the figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("sandbox")
def bench_sandbox(
    files: int = typer.Option(200, min=1, help="Files in the forked workspace."),
    interp_mb: int = typer.Option(50, min=1, help="MiB of live data in the interpreter."),
    repeats: int = typer.Option(50, min=5, help="Local forks to time."),
    docker: bool = typer.Option(True, help="Also time Docker (skipped if no engine)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Local fork latency vs Docker fork vs a fresh container restored to the same state."""
    from ..bench import sandbox_report

    with progress_bar() as progress:
        report = sandbox_report(n_files=files, interp_mb=interp_mb, repeats=repeats,
                                docker=docker, progress=progress)
    print_report(report, "sandbox fork", as_json)


@bench_app.command("policy")
def bench_policy(
    n: int = typer.Option(8, min=1, help="Branches continued from the prefix."),
    prefix: int = typer.Option(512, min=16, help="Tokens in the shared prefix."),
    spec: str = typer.Option("tiny", "--policy", help="Policy SPEC, e.g. tiny or hf:PATH."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Continue N branches from a P-token prefix: fork+extend vs re-prefilling it."""
    from ..policy.bench import bench_policy as measure

    with progress_bar() as progress:
        report = measure(n=n, prefix=prefix, spec=spec, progress=progress)
    print_report(report, "policy fork", as_json)


@bench_app.command("learner")
def bench_learner(
    shape: str = typer.Option("paper", help="Batch shape: paper (m2 n2 l1 k3 a task) or deep "
                              "(m1 n4 l3, all 13 leaves, longer turns)."),
    tokens_per_turn: int = typer.Option(None, min=1, help="Generated tokens a turn "
                                        "(default: the shape's; paper 16, deep 48)."),
    policy: str = typer.Option("tiny", help="Model: tiny (re-initialised), smollm2 or hf:PATH."),
    attention: str = typer.Option("auto", help="The packed side's path: auto (by segments, "
                                  "memory-linear from 4096 packed tokens), cascade (by "
                                  "segments), dense (one pass, [T, T] mask) or linear."),
    alive_paths: float = typer.Option(None, min=1.0, help="The walk by segments keeps at "
                                      "most this many longest paths' tokens alive "
                                      "(default 1.5)."),
    tasks: int = typer.Option(8, min=1), repeats: int = typer.Option(1, min=1),
    device: str = typer.Option("cpu", help="cpu or cuda (bf16 on cuda)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Packed-tree training step vs one row per leaf, each side in a process of its own."""
    from ..learn.bench import bench_attention, bench_shape, policy_path
    from ..learn.bench import bench_learner as measure

    try:  # names checked here, so a bad one is a usage error before any process starts
        bench_shape(shape)
        bench_attention(attention)
        if policy != "tiny":
            policy_path(policy)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with progress_bar() as progress:
        report = measure(shape, tasks=tasks, tokens_per_turn=tokens_per_turn, policy=policy,
                         attention=attention, alive_paths=alive_paths, repeats=repeats,
                         device=device, progress=progress)
    print_report(report, "packed tree vs per-leaf step", as_json)


@bench_app.command("rollout")
def bench_rollout(
    env: str = typer.Option("treegym/Maze-v0", "--env", help="Env id to roll out."),
    policy: str = typer.Option("tiny", help="Policy SPEC."),
    m: int = typer.Option(2, min=1), n: int = typer.Option(2, min=1),
    rounds: int = typer.Option(1, "--l", min=0),
    tasks: int = typer.Option(8, min=1),
    max_tokens: int = typer.Option(32, min=1, help="Tokens per turn."),
    max_turns: int = typer.Option(6, min=1, help="Turns per episode (the env's max_turns), "
                                  "so a policy that never answers still ends in minutes."),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable); "
                                      "max_turns here wins over --max-turns."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="Also time tree rollouts on 1 and --workers Ray workers: "
                            "local, auto or HOST:PORT."),
    workers: int = typer.Option(2, min=1, help="Ray workers compared with one (with --ray)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Chain vs tree on the same tasks and policy, at an equal number of leaves per task."""
    from ..registry import spec as env_spec
    from ..rollout.bench import bench_rollout as measure

    env_spec(env)
    shape = dict(spec=policy, m=m, n=n, l=rounds, tasks=tasks, max_tokens=max_tokens,
                 env_kwargs={"max_turns": max_turns} | parse_options(env_opt))
    with progress_bar() as progress:
        ray_report = {}
        if ray is not None:  # first, so a missing Ray fails before the in-process runs
            from ..distributed.bench import ray_figures

            ray_report = ray_figures(env, address=ray, workers=workers, progress=progress,
                                     **shape)
        report = measure(env, progress=progress, **shape) | ray_report
    print_report(report, "chain vs tree rollout", as_json)


@bench_app.command("signal")
def bench_signal(
    env: str = typer.Option("treegym/RG-chain_sum-v0", "--env", help="Env id to roll out."),
    policy: str = typer.Option("tiny", help="Policy SPEC; an hf policy (gradients need "
                               "its torch model)."),
    tasks: int = typer.Option(4, min=1),
    repeats: int = typer.Option(3, min=2, help="R: batches per mode, one seed each."),
    chains: int = typer.Option(4, min=1, help="Chains per task in a chain batch."),
    m: int = typer.Option(2, min=1), n: int = typer.Option(2, min=1),
    rounds: int = typer.Option(1, "--l", min=0),
    reference_factor: int = typer.Option(8, min=1, help="The reference batch has this many "
                                         "times --chains chains per task."),
    max_tokens: int = typer.Option(48, min=1, help="Tokens per turn."),
    max_turns: int = typer.Option(2, min=1, help="Turns per episode (the env's max_turns)."),
    temperature: float = typer.Option(1.0, min=0.0),
    seed: int = typer.Option(0),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable); "
                                      "max_turns here wins over --max-turns."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Gradient signal per generated token: chain (GRPO) vs tree (Tree-GRPO) batches at a
    fixed policy, against a large reference batch."""
    from ..learn.signal import bench_signal as measure
    from ..registry import spec as env_spec

    env_spec(env)
    with progress_bar() as progress:
        report = measure(env, spec=policy, tasks=tasks, repeats=repeats, chains=chains, m=m,
                         n=n, l=rounds, reference_factor=reference_factor,
                         max_tokens=max_tokens, max_turns=max_turns, temperature=temperature,
                         seed=seed, env_kwargs=parse_options(env_opt), progress=progress)
    print_report(report.figures(), "chain vs tree gradient signal", as_json)


@bench_app.command("serve")
def bench_serve(
    repeats: int = typer.Option(20, min=2, help="Forks and replays to time (after 3 "
                                "warm-up rounds)."),
    seed: int = typer.Option(0, help="The PyCalc-v0 task's seed."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Over a `treegym serve` child process: a fork of PyCalc-v0 at turn 5 vs reset plus
    replaying the same 5 actions, and one step's round trip."""
    from ..serve.bench import bench_serve as measure

    with progress_bar() as progress:
        report = measure(repeats=repeats, seed=seed, progress=progress)
    print_report(report, "served fork vs reset + replay", as_json)
