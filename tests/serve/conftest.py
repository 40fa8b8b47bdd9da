"""`treegym serve` as the tests meet it: a real server process on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from treegym.serve.child import ServerProcess as Server
from treegym.serve.child import serving


@pytest.fixture(scope="module")
def pycalc_server() -> Iterator[Server]:
    with serving("treegym/PyCalc-v0", "--env-opt", "max_turns=16") as server:
        yield server
