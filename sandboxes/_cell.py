"""Running one python() cell in the worker's interpreter: the notebook rule for the last
expression, capped output streams, the stop a timer or the CPU limit raises into user
code, and the traceback the agent sees. Stdlib only, like the worker that imports it.
"""

from __future__ import annotations

import ast
import io
import os
import traceback
from typing import Any

STOP_TEXT = {"timeout": "TimeoutError: the call exceeded its {:g} s timeout",
             "cpu": "TimeoutError: the call exceeded its CPU-seconds limit"}


class Stop(BaseException):
    """Raised into user code by a timer or the CPU-limit signal; not an `Exception`."""

    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


def raise_stop(limit: str) -> Any:
    """A signal handler that stops the running cell with `limit`."""
    def handler(signum: int, frame: Any) -> None:
        raise Stop(limit)
    return handler


class CappedStream(io.TextIOBase):
    """sys.stdout/sys.stderr: writes through to the call's capture fd, dropping past the cap."""

    def __init__(self, fd: int, cap: int) -> None:
        self.fd, self.cap, self.seen = fd, cap, 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        data = s.encode("utf-8", "replace")
        room = self.cap - self.seen
        self.seen += len(data)
        if room > 0:
            view = memoryview(data[:room])
            while view:
                view = view[os.write(self.fd, view):]
        return len(s)


def read_capture(fd: int, cap: int) -> str:
    return os.pread(fd, cap, 0).decode("utf-8", "replace")


def execute(code: str, ns: dict[str, Any]) -> None:
    """Run code like a notebook cell: the value of a final expression is printed."""
    tree = ast.parse(code, "<sandbox>", "exec")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<sandbox>", "exec"), ns)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<sandbox>", "eval"), ns)
        if value is not None:
            print(repr(value))


def user_traceback(e: BaseException, worker_file: str, timeout: float = 0.0) -> str:
    """The traceback without the worker's own frames (this file's, and `worker_file`'s);
    a stop ends with what the agent should read instead of the stop itself."""
    report = traceback.TracebackException(type(e), e, e.__traceback__)
    report.stack = traceback.StackSummary.from_list(
        [f for f in report.stack if f.filename not in (__file__, worker_file)])
    lines = list(report.format())
    if isinstance(e, Stop):
        lines[-1] = STOP_TEXT[e.limit].format(timeout) + "\n"
    return "".join(lines)
