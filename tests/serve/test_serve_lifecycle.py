"""`treegym serve` under load and at its edges: the token rule, the session cap, a crashed
sandbox, and SIGTERM with 32 sessions and their forks live."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from helpers import TREEGYM, call

from treegym.errors import EpisodeError
from treegym.sandboxes.local import worker_processes
from treegym.serve import RemoteEnv
from treegym.serve.child import serving


def test_a_bind_beyond_loopback_needs_a_token() -> None:
    refused = subprocess.run([TREEGYM, "serve", "treegym/Maze-v0", "--host", "0.0.0.0",
                              "--port", "0"], capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items()
                                  if k != "TREEGYM_SERVE_TOKEN"})
    assert refused.returncode != 0 and refused.stdout == ""
    assert "refusing to bind 0.0.0.0 without a token" in refused.stderr
    assert "--token" in refused.stderr
    with serving("treegym/Maze-v0", "--host", "0.0.0.0",
                 env={"TREEGYM_SERVE_TOKEN": "s3cret"}) as server:
        base = server.http.replace("0.0.0.0", "127.0.0.1")
        anonymous = httpx.post(f"{base}/reset", json={"seed": 0})
        assert anonymous.status_code == 401 and "--token" in anonymous.json()["detail"]
        wrong = httpx.get(f"{base}/metadata", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        env = RemoteEnv(server.url.replace("0.0.0.0", "127.0.0.1"), token="s3cret")
        try:
            assert "Maze" in env.reset(seed=0)[0]
        finally:
            env.close()


def test_32_sessions_and_forks_then_sigterm_leaves_no_sandbox() -> None:
    with serving("treegym/PyCalc-v0", "--max-sessions", "40") as server:
        def session(i: int) -> RemoteEnv:
            env = RemoteEnv(server.url)
            env.reset(seed=i)
            env.step(call("python", code=f"x = {i}"))
            return env

        with ThreadPoolExecutor(max_workers=32) as pool:
            envs = list(pool.map(session, range(32)))
        forks = [env.fork() for env in envs[:8]]
        for i, child in enumerate(forks):
            assert child.step(call("python", code="x += 100; print(x)"))[0] == str(i + 100)
        assert envs[0].step(call("python", code="print(x)"))[0] == "0"  # the parent's own x
        with pytest.raises(EpisodeError, match="--max-sessions limit"):
            envs[9].fork()
        workers = set(worker_processes(ancestor=server.proc.pid))
        assert len(workers) >= 40
        # uvicorn shuts down (closing every session) and then dies of the signal it caught
        assert server.stop(signal.SIGTERM) == -signal.SIGTERM
        deadline = time.monotonic() + 10
        while workers & set(worker_processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not workers & set(worker_processes()), "sandbox workers outlived the server"
        for env in envs + forks:
            env.close()


def test_a_crashed_sandbox_is_an_error_of_its_session_alone() -> None:
    with serving("treegym/PyCalc-v0") as server:
        doomed, bystander = RemoteEnv(server.url), RemoteEnv(server.url)
        try:
            for env in (doomed, bystander):
                env.reset(seed=0)
                env.step(call("python", code="y = 7"))
            text = doomed.step(call("python", code="import os; os.kill(os.getpid(), 9)"))[0]
            assert "SandboxDead" in text and doomed.history[-1].results[0].error == text
            assert "SandboxDead" in doomed.step(call("python", code="print(y)"))[0]
            assert bystander.step(call("python", code="print(y)"))[0] == "7"
            assert httpx.get(f"{server.http}/health").json() == {"status": "healthy"}
        finally:
            doomed.close()
            bystander.close()
