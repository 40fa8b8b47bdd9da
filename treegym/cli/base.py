"""The `treegym` app, its shared options and output helpers, and `main`, which turns every
expected failure into one clear line and a non-zero exit."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import TaskID
from rich.table import Table
from typer.exceptions import TyperException

from ..errors import TreegymError
from ..progress import Progress

app = typer.Typer(
    help="treegym: agent-environment gym whose rollouts are trees.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
# Progress goes to stderr, so stdout holds only results and its last line stays the JSON.
progress_console = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object/list on the last line.")


def parse_options(pairs: list[str]) -> dict[str, object]:
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


def env_options(env_id: str, pairs: list[str], sandbox: str | None) -> dict[str, object]:
    """The env's options from `--env-opt` pairs and `--sandbox`, refusing a sandbox choice
    that cannot apply: a remote env's is made where it is served, and some envs run none."""
    from ..registry import REMOTE_PREFIX, env_info

    options = parse_options(pairs)
    if sandbox is None:
        return options
    if sandbox not in ("local", "docker"):
        raise typer.BadParameter(f"--sandbox must be local or docker, not {sandbox!r}")
    if env_id.startswith(REMOTE_PREFIX):
        raise typer.BadParameter("a remote env's sandbox is chosen where it is served: "
                                 "`treegym serve ID --sandbox docker`; drop --sandbox")
    if not env_info(env_id).needs_sandbox:
        raise typer.BadParameter(f"{env_id} runs no sandbox; drop --sandbox")
    return options | {"sandbox": sandbox}


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A `Progress` callback that draws on stderr, one bar per kind of step (`what`).

    An open-ended count (total None, e.g. tokens generated) shows its rate beside it,
    which is what tells a user that a long batch is still moving. Where stderr is no
    terminal, rich draws nothing live and writes the bars' final state once at the end,
    unless the work failed or was interrupted.
    """
    from rich.console import RenderableType
    from rich.progress import BarColumn, ProgressColumn, Task, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars
    from rich.text import Text

    class Bar(BarColumn):
        """No bar for an open-ended count: it has no end to fill up to."""

        def render(self, task: Task) -> RenderableType:
            return Text("") if task.total is None else super().render(task)

    class Count(ProgressColumn):
        """done/total for a bounded count; the count and its rate for an open-ended one."""

        def render(self, task: Task) -> Text:
            if task.total is not None:
                return Text(f"{int(task.completed)}/{int(task.total)}")
            rate = "" if task.speed is None else f" ({task.speed:,.0f}/s)"
            return Text(f"{int(task.completed):,}{rate}")

    columns = (TextColumn("{task.description}"), Bar(), Count(), TimeElapsedColumn())
    with Bars(*columns, console=progress_console) as bars:
        ids: dict[str, TaskID] = {}

        def report(done: int, total: int | None, what: str) -> None:
            if what not in ids:
                ids[what] = bars.add_task(what, total=total)
            bars.update(ids[what], completed=done, total=total)

        try:
            yield report
        except BaseException:
            bars.live.transient = True  # a failed run ends on its one error line, no bars
            raise


def print_report(report: dict[str, object], title: str, as_json: bool) -> None:
    """A bench's figures as a table (unless `as_json`), then as JSON on the last line."""
    if not as_json:
        table = Table("figure", "value", title=title)
        for key, value in report.items():
            table.add_row(key, str(value))
        console.print(table)
    print(json.dumps(report))


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
        _fail(str(exc), exc.exit_code)
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
