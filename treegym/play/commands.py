"""`Controller`: one line of input in, text out; the whole `play` protocol minus a terminal.

Nothing a person types can end the session by mistake: every expected failure becomes a
one-line message and the session stays where it was, because each session operation
either completes or changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from ..errors import TreegymError
from ..spaces import to_printable
from . import render
from .session import PlayError, PlaySession
from .shortforms import to_action


class Outcome(BaseModel):
    """What the terminal does next: prefill the prompt with text, or leave."""

    prefill: str | None = None
    quit: bool = False


class Controller:
    """Runs commands and actions on a session, writing everything through `out`."""

    def __init__(self, session: PlaySession, out: Callable[[str], None]) -> None:
        self.session = session
        self.out = out
        self.commands: dict[str, Callable[[str], Outcome | None]] = {
            "/help": lambda _: self.out(render.help_text()),
            "/tools": lambda _: self.out("\n".join(render.tool_lines(session.tools))),
            "/fork": self._fork,
            "/branches": lambda _: self.out(render.branches_text(session)),
            "/go": self._go,
            "/back": self._back,
            "/tree": lambda _: self.out(render.tree_text(session)),
            "/world": lambda arg: self.out(render.world_file_text(session.env, arg) if arg
                                           else render.world_text(session.env)),
            "/model": self._model,
            "/auto": self._auto,
            "/save": self._save,
            "/quit": lambda _: Outcome(quit=True),
            "/exit": lambda _: Outcome(quit=True),
        }

    def handle(self, line: str) -> Outcome:
        """Act on one line of input; expected failures print one line and change nothing."""
        try:
            return self._dispatch(line.strip()) or Outcome()
        except TreegymError as exc:
            self.out(f"! {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug in one command must not end play
            self.out(f"! internal error: {type(exc).__name__}: {exc}")
        return Outcome()

    def _dispatch(self, line: str) -> Outcome | None:
        if self.session.proposals:
            picked = self._pick(line)
            if picked is not None:
                return picked
        if not line:
            return None
        if line.startswith("/"):
            name, _, arg = line.partition(" ")
            command = self.commands.get(name)
            if command is None:
                raise PlayError(f"unknown command {name}; /help lists them")
            return command(arg.strip())
        node = self.session.step(to_action(line, self.session.tools))
        self.out(render.turn_text(self.session, node))
        return None

    def _pick(self, line: str) -> Outcome | None:
        """Answer pending proposals: a number runs one, `e N` edits one, Enter drops them."""
        session = self.session
        if not line:
            session.discard()
            self.out("proposals discarded")
            return Outcome()
        word, _, arg = line.partition(" ")
        if word.isdigit():
            node = session.take(int(word) - 1)
            self.out(render.turn_text(session, node))
            return Outcome()
        if word in ("e", "/edit"):
            index = _number(arg, "e N")
            if not 1 <= index <= len(session.proposals):
                raise PlayError(f"no proposal {index}; pick 1-{len(session.proposals)}")
            text = to_printable(session.proposals[index - 1].gen.text)
            session.discard()
            self.out("edit the action, then Enter to run it as your own turn")
            return Outcome(prefill=text)
        return None  # anything else: proposals are dropped by whatever runs next

    def _fork(self, _: str) -> None:
        index = self.session.fork()
        self.out(f"branch {index + 1} made at turn {self.session.depth(self.session.head)}; "
                 f"now on branch {index + 1}")

    def _go(self, arg: str) -> None:
        self.session.go(_number(arg, "/go N") - 1)
        self.out(f"on branch {self.session.current + 1}")
        self._show_head()

    def _back(self, _: str) -> None:
        self.session.back()
        self.out(f"back at turn {self.session.depth(self.session.head)} (kept world, no re-run)")
        self._show_head()

    def _show_head(self) -> None:
        session = self.session
        head = session.head
        if head < 0:
            self.out(render.one_line(session.prompt, 200))
        else:
            self.out(render.action_summary(session.nodes[head]) + " -> "
                     + render.one_line(session.nodes[head].observation, 200))
        self.out(render.status(session))

    def _model(self, arg: str) -> None:
        k = _number(arg, "/model K") if arg else 3
        self.session.need_policy("/model")
        self.out(f"sampling {k} proposal{'s' if k > 1 else ''}…")
        self.out(render.proposals_text(self.session.propose(k)))

    def _auto(self, _: str) -> None:
        self.session.need_policy("/auto")
        self.out("the policy plays this branch to its end (Ctrl-C stops it)…")
        try:
            self.session.auto(lambda node: self.out(render.turn_text(self.session, node)))
        except KeyboardInterrupt:
            self.session.discard()
            self.out("auto stopped; the turns it made are kept")
            self.out(render.status(self.session))

    def _save(self, arg: str) -> None:
        if not arg:
            raise PlayError("/save needs a file name: /save FILE")
        tree = self.session.save(arg)
        self.out(f"saved 1 tree ({len(tree.nodes)} turns, {len(tree.leaves)} finished) to "
                 f"{arg}; open it with `treegym view {arg}`")


def _number(text: str, usage: str) -> int:
    if not text.strip().isdigit():
        raise PlayError(f"expected a number: {usage}")
    return int(text)
