"""`treegym serve ID`: put a registered env behind OpenEnv's protocol, with fork."""

from __future__ import annotations

import os

import typer

from .base import app, env_options


@app.command()
def serve(
    env_id: str = typer.Argument(..., help="Registered env id, e.g. treegym/PyCalc-v0."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; beyond loopback needs "
                             "--token."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port; 0 picks a free one."),
    sandbox: str = typer.Option(None, help="local or docker (sandbox envs only)."),
    max_sessions: int = typer.Option(64, min=1, help="Live sessions at most, forks included."),
    token: str = typer.Option(None, help="Required of every request (Authorization: Bearer "
                              "T); default $TREEGYM_SERVE_TOKEN."),
    idle_timeout: float = typer.Option(600.0, min=0.1, help="Seconds before an idle session "
                                       "and its sandbox are closed."),
    max_message_bytes: int = typer.Option(1 << 20, min=1024, help="Largest message taken."),
    env_opt: list[str] = typer.Option([], help="Env option KEY=VALUE (repeatable)."),
) -> None:
    """Serve ENV_ID over OpenEnv's HTTP and WebSocket routes, plus a fork message.

    Prints `serving ID at ws://HOST:PORT` once it listens; Ctrl-C or SIGTERM closes every
    session's sandbox."""
    from ..registry import env_info
    from ..serve.server import run
    from ..serve.sessions import ServeConfig

    options = env_options(env_id, env_opt, sandbox)
    env_info(env_id)
    config = ServeConfig(env_id=env_id, env_options=options, host=host, port=port,
                         max_sessions=max_sessions,
                         token=token or os.environ.get("TREEGYM_SERVE_TOKEN") or None,
                         idle_timeout_s=idle_timeout, max_message_bytes=max_message_bytes)
    run(config, lambda url: print(f"serving {env_id} at {url} (Ctrl-C to stop)", flush=True))
