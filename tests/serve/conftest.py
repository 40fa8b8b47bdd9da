"""`treegym serve` as the tests meet it: a real server process on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TREEGYM = str(Path(sys.executable).with_name("treegym"))


class Server:
    """A running `treegym serve`: its process and the URL it announced."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.http = url.replace("ws://", "http://")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start `treegym serve ARGS --port 0`, wait for its `serving ... at URL` line, and
    stop it with SIGTERM afterwards (a test may stop it itself first)."""
    # stderr goes to a file: a pipe nobody reads fills up and stalls the server mid-test
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([TREEGYM, "serve", *args, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=log, text=True, env={**os.environ, **(env or {})})
    line = proc.stdout.readline() if proc.stdout is not None else ""
    if " at ws://" not in line:
        proc.kill()
        proc.wait(timeout=10)
        log.seek(0)
        pytest.fail(f"treegym serve did not start: {line!r} {log.read()!r}")
    server = Server(proc, line.split(" at ", 1)[1].split()[0])
    try:
        yield server
    finally:
        server.stop()
        log.close()


@pytest.fixture(scope="module")
def pycalc_server() -> Iterator[Server]:
    with serving("treegym/PyCalc-v0", "--env-opt", "max_turns=16") as server:
        yield server
