"""The terminal side of `treegym play`: read a line, hand it to the controller, repeat.

prompt_toolkit gives history, line editing, a status toolbar and a prefilled prompt for
editing a model's proposal; without it (or without a terminal) plain `input()` still
plays. Every way out (Ctrl-D, Ctrl-C, /quit, a hang-up) runs the caller's cleanup.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..policy import SamplingParams, make_policy
from . import render
from .commands import Controller
from .session import PlaySession

Reader = Callable[[str, str], str]


def _hang_up(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the session's cleanup


def _prompt_toolkit_reader(session: PlaySession) -> Reader | None:
    """A prompt_toolkit line reader, or None where it is missing or there is no terminal."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.key_binding import KeyBindings
    except ImportError:
        return None
    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event: object) -> None:  # Alt+Enter: a newline inside one action
        event.current_buffer.insert_text("\n")  # type: ignore[attr-defined]

    prompt = PromptSession(key_bindings=keys)

    def toolbar() -> str:
        return f" {render.status(session)[1:-1]} · /help "

    def read(message: str, prefill: str) -> str:
        return prompt.prompt(message, default=prefill, bottom_toolbar=toolbar)

    return read


def _plain_reader(message: str, prefill: str) -> str:
    if prefill:
        print(f"(to edit) {prefill}")
    return input(message)


def play(session: PlaySession) -> None:
    """Run the interactive loop until the person leaves; the caller closes the session."""
    signal.signal(signal.SIGHUP, _hang_up)
    signal.signal(signal.SIGTERM, _hang_up)
    controller = Controller(session, lambda text: print(text, flush=True))
    read = _prompt_toolkit_reader(session) or _plain_reader
    print(render.header(session), flush=True)
    print(render.status(session), flush=True)
    prefill = ""
    while True:
        message = f"b{session.current + 1} t{session.depth(session.head)}> "
        try:
            line = read(message, prefill)
            outcome = controller.handle(line)
        except (EOFError, KeyboardInterrupt):
            break
        if outcome.quit:
            break
        prefill = outcome.prefill or ""
    print(f"bye: {len(session.nodes)} turns on {len(session.branches)} branches; "
          "closing every kept world", flush=True)


def run(
    env_id: str,
    *,
    seed: int,
    env_kwargs: dict[str, Any],
    policy_spec: str | None,
    params: SamplingParams,
) -> None:
    """`treegym play`: load the policy, open the session, play, and always clean up."""
    policy = None
    if policy_spec is not None:
        print(f"loading policy {policy_spec}…", flush=True)
        policy = make_policy(policy_spec)
    try:
        with PlaySession(env_id, seed=seed, env_kwargs=env_kwargs, policy=policy,
                         policy_name=policy_spec, params=params) as session:
            play(session)
    finally:
        if policy is not None:
            policy.close()
