"""`treegym bench serve`: a fork over the server against rebuilding the same world by
reset and replay over the server, and the round trip of one step.

The server is a real `treegym serve` child process on a free loopback port, driven by
`RemoteEnv` as a remote rollout drives it, so every figure includes the WebSocket round
trip and the server's thread hop as well as the sandbox work.

The world is PyCalc-v0 at turn 5: five `python` calls that leave files on disk and
variables in the interpreter, which is what a fork must carry and what a server without
fork would have to rebuild. Each repeat times

- fork: `parent.fork()` until the child's env is connected and ready for a step (the
  server's `env.fork()`, plus the child's new connection); the child is then closed,
  outside the timing;
- reset + replay: `reset(seed)` on a second, already connected session (which opens a
  fresh sandbox) and the same five actions, i.e. the cheapest way to reach the same
  world without fork, since it pays for no new connection;
- step: one trivial `python` call on the replayed world, as turn 6.

The first `_WARMUP` repeats are not counted. A last fork checks that the fork and the
replay reached the same world, so the bench never times a fork that lost its state.
Speed is reported, not judged: see `treegym.bench`.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import EpisodeError, ForkError
from ..parsing import tool_call_text
from ..progress import Progress, counter, silent
from ..sandboxes.bench import percentiles_ms
from .child import serving
from .remote import RemoteEnv

ENV_ID = "treegym/PyCalc-v0"
_WARMUP = 3

# Five turns that build interpreter state and files, as an agent's first turns would.
_PREFIX_CODE = (
    "import json, os\ndata = {f'k{i}': i * i for i in range(2000)}\nprint(len(data))",
    "os.makedirs('work', exist_ok=True)\n"
    "for i in range(20):\n    open(f'work/part{i}.txt', 'w').write(str(i) * 2000)",
    "total = sum(data.values())\nprint(total)",
    "json.dump(data, open('work/data.json', 'w'))\nprint(os.path.getsize('work/data.json'))",
    "rows = [len(open(f'work/part{i}.txt').read()) for i in range(20)]\nprint(sum(rows))",
)
_STEP_CODE = "print(1)"
_CHECK_CODE = ("print(total, sum(rows), len(json.load(open('work/data.json'))), "
               "sorted(os.listdir('work'))[:3])")


def prefix_actions() -> list[str]:
    """The five action texts that take PyCalc-v0 to turn 5."""
    return [tool_call_text("python", {"code": code}) for code in _PREFIX_CODE]


def _play(env: RemoteEnv, actions: list[str]) -> None:
    for action in actions:
        _, _, terminated, truncated, info = env.step(action)
        failed = info["parse_error"] or next((r.error for r in info["results"] if r.error),
                                             None)
        if failed or terminated or truncated or not info["results"]:
            raise EpisodeError(f"the bench's action {action!r} did not run as a tool call: "
                               f"{failed or 'no call ran, or the episode ended'}")


def bench_serve(repeats: int = 20, seed: int = 0,
                progress: Progress = silent) -> dict[str, Any]:
    """Fork vs reset + replay of a turn-5 PyCalc-v0 world, and one step's round trip, all
    over a `treegym serve` child process (see the module docstring)."""
    actions = prefix_actions()
    fork_ms: list[float] = []
    replay_ms: list[float] = []
    step_ms: list[float] = []
    envs: list[RemoteEnv] = []  # every env opened here, closed in the finally
    with serving(ENV_ID) as server:
        url = server.url
        try:
            parent = RemoteEnv(url)
            envs.append(parent)
            replay = RemoteEnv(url, server=parent.server)
            envs.append(replay)
            parent.reset(seed=seed)
            _play(parent, actions)
            tick = counter(progress, repeats + _WARMUP, "serve forks and replays")
            for i in range(repeats + _WARMUP):
                start = time.perf_counter()
                child = parent.fork()
                elapsed = time.perf_counter() - start
                child.close()
                if i >= _WARMUP:
                    fork_ms.append(elapsed * 1000)

                start = time.perf_counter()
                replay.reset(seed=seed)
                _play(replay, actions)
                elapsed = time.perf_counter() - start
                if i >= _WARMUP:
                    replay_ms.append(elapsed * 1000)

                start = time.perf_counter()
                replay.step(tool_call_text("python", {"code": _STEP_CODE}))
                elapsed = time.perf_counter() - start
                if i >= _WARMUP:
                    step_ms.append(elapsed * 1000)
                tick()
            _check_same_world(parent, replay, seed, actions, envs)
        finally:
            for env in envs:
                env.close()
    fork, rebuilt, step = (percentiles_ms(t, 50, 90) for t in (fork_ms, replay_ms, step_ms))
    return {
        "env_id": ENV_ID,
        "turn": len(actions),
        "repeats": repeats,
        "fork_p50_ms": fork["p50_ms"],
        "fork_p90_ms": fork["p90_ms"],
        "reset_replay_p50_ms": rebuilt["p50_ms"],
        "reset_replay_p90_ms": rebuilt["p90_ms"],
        "speedup_vs_reset_replay": round(rebuilt["p50_ms"] / fork["p50_ms"], 2),
        "step_p50_ms": step["p50_ms"],
        "step_p90_ms": step["p90_ms"],
    }


def _check_same_world(parent: RemoteEnv, replay: RemoteEnv, seed: int, actions: list[str],
                      envs: list[RemoteEnv]) -> None:
    """A fork and a replay of the same actions must see the same files and variables."""
    child = parent.fork()
    envs.append(child)
    replay.reset(seed=seed)
    _play(replay, actions)
    check = tool_call_text("python", {"code": _CHECK_CODE})
    forked, replayed = child.step(check)[0], replay.step(check)[0]
    if forked != replayed:
        raise ForkError(f"the served fork lost its world: it printed {forked!r} where "
                        f"the replay printed {replayed!r}")
