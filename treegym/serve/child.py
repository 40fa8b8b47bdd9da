"""`treegym serve` as a child process: what benches and tests start, and stop cleanly.

The child gets a session of its own, so a Ctrl-C reaches only its parent, which stops
the server once, after the envs driving it have closed their sessions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from ..errors import EpisodeError

_STOP_TIMEOUT_S = 30.0


class ServerProcess:
    """A running `treegym serve`: its process and the URL it announced."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.http = url.replace("ws://", "http://")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = _STOP_TIMEOUT_S) -> int:
        """Signal the server (it closes every session's sandbox on SIGTERM), kill it if it
        does not stop in `timeout`, and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=timeout)


@contextmanager
def serving(env_id: str, *args: str, env: dict[str, str] | None = None
            ) -> Iterator[ServerProcess]:
    """Run `treegym serve ENV_ID ARGS --port 0`, yield it once it announces its URL, and
    stop it on the way out (a caller may stop it itself first), Ctrl-C included."""
    # stderr goes to a file: a pipe nobody reads fills up and stalls the server
    with _sigterm_exits(), tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from treegym.cli import main; main()", "serve", env_id,
             *args, "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True, env={**os.environ, **(env or {})})
        server = None
        try:
            line = proc.stdout.readline() if proc.stdout is not None else ""
            if " at ws://" not in line:
                raise EpisodeError(f"`treegym serve {env_id}` did not start: "
                                   f"{_last_line(proc, log, line)}")
            server = ServerProcess(proc, line.split(" at ", 1)[1].split()[0])
            yield server
        finally:
            (server or ServerProcess(proc, "")).stop()
            if proc.stdout is not None:
                proc.stdout.close()


def _last_line(proc: subprocess.Popen[str], log: IO[str], line: str) -> str:
    proc.kill()
    proc.wait(timeout=_STOP_TIMEOUT_S)
    log.seek(0)
    return (log.read().strip().splitlines() or [line.strip() or "no output"])[-1]


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While inside, a SIGTERM to this process raises SystemExit (main thread only), so a
    terminated bench also passes through `serving`'s cleanup rather than dying at once and
    leaving its server, in a session of its own, running orphaned."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
