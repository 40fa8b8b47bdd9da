"""`RemoteEnv`: an AgentEnv whose world lives in a `treegym serve` process.

A sampler can't tell it from a local env: `reset` and `step` return what the served env
returned, `history` holds the same `Turn` records (rebuilt from each observation's
metadata), and `fork()` asks the server to fork the session, so the branch's world is
copied where it lives instead of being replayed. One WebSocket connection per env keeps a
step to one round trip.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from typing_extensions import Self

from ..env import AgentEnv, EnvConfig
from ..errors import ConfigError, EpisodeError, ForkError
from ..records import Task, Turn
from ..registry import REMOTE_PREFIX
from .protocol import ServerMetadata, StepPayload


def base_urls(url: str) -> tuple[str, str]:
    """(ws://host:port, http://host:port) for a server URL given as ws(s):// or http(s)://."""
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
        raise ConfigError(f"{url!r} is not a server URL; write it as ws://HOST:PORT "
                          "(what `treegym serve` prints), e.g. remote:ws://127.0.0.1:8000")
    return (f"{'wss' if secure else 'ws'}://{parts.netloc}",
            f"{'https' if secure else 'http'}://{parts.netloc}")


class RemoteEnv(AgentEnv):
    """An env served by `treegym serve URL`: `treegym.make("remote:ws://host:port")`.

    Env options belong to the server (`treegym serve ID --env-opt K=V`); options given
    here are checked against the server's, so a run never records options its env did
    not have.
    """

    description = "An env served by `treegym serve`, reached over OpenEnv's protocol."

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 120.0,
                 session_id: str | None = None, server: ServerMetadata | None = None,
                 render_mode: str | None = None, **options: Any) -> None:
        super().__init__(render_mode=render_mode)
        self.url = url
        self.ws_url, self.http_url = base_urls(url)
        self.token = token if token is not None else os.environ.get("TREEGYM_SERVE_TOKEN")
        self.timeout = timeout
        self.server = server or self._metadata()
        self._check_options(options)
        self.config = EnvConfig(max_turns=self.server.max_turns or 20)
        self.env_id = self.server.name
        self.tool_schemas: list[dict[str, Any]] = []
        self._ws = self._connect(session_id)

    # -- the connection ----------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _metadata(self) -> ServerMetadata:
        try:
            reply = httpx.get(f"{self.http_url}/metadata", headers=self._headers(),
                              timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ConfigError(f"no treegym server answers at {self.url}: {exc}; start one with "
                              "`treegym serve ENV_ID --port P`") from None
        if reply.status_code == 401:
            raise ConfigError(f"{self.url} refused the token: pass the server's --token as "
                              "RemoteEnv(url, token=T) or TREEGYM_SERVE_TOKEN")
        reply.raise_for_status()
        body = reply.json()
        body.setdefault("fork", False)  # a plain OpenEnv server says nothing of forks
        for key, default in (("max_turns", 0), ("max_sessions", 0), ("idle_timeout_s", 0.0),
                             ("max_message_bytes", 0)):
            body.setdefault(key, default)
        return ServerMetadata.model_validate(
            {k: v for k, v in body.items() if k in ServerMetadata.model_fields})

    def _check_options(self, options: dict[str, Any]) -> None:
        differ = {k: v for k, v in options.items() if self.server.env_options.get(k) != v}
        if differ:
            wanted = " ".join(f"--env-opt {k}={json.dumps(v)}" for k, v in options.items())
            raise ConfigError(
                f"{self.url} serves {self.server.name} with options "
                f"{self.server.env_options or '{}'}, not {differ}: env options are set where "
                f"the env is served; restart it as `treegym serve {self.server.name} {wanted}`"
                ", or drop them here")

    def _connect(self, session_id: str | None) -> Any:
        from websockets.sync.client import connect

        query = urlencode({"session_id": session_id}) if session_id else ""
        return connect(f"{self.ws_url}/ws" + (f"?{query}" if query else ""),
                       additional_headers=self._headers(), open_timeout=self.timeout,
                       max_size=None, legacy=True)  # held across calls; close() closes it

    def _ask(self, kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one message and return its reply's data; a server error is an EpisodeError."""
        self._check_open()
        from websockets.exceptions import ConnectionClosed

        try:
            self._ws.send(json.dumps({"type": kind, "data": data or {}}))
            reply = json.loads(self._ws.recv(timeout=self.timeout))
        except (ConnectionClosed, TimeoutError) as exc:
            raise EpisodeError(f"the connection to {self.url} was lost during {kind} ({exc}); "
                               "this episode is gone: make a new env and reset") from None
        if reply.get("type") == "error":
            error = reply.get("data", {})
            raise EpisodeError(f"{self.url}: {error.get('message', 'unknown error')} "
                               f"(code: {error.get('code', 'UNKNOWN')})")
        return reply.get("data", {})

    # -- Gymnasium API -----------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[str, dict[str, Any]]:
        payload = StepPayload.model_validate(
            self._ask("reset", {"seed": seed, "options": dict(options or {})}))
        meta = payload.observation.metadata
        self.task = Task.model_validate(meta["task"])
        self.tool_schemas = meta["tools"]
        self.turn, self.history, self._seed, self._done = 0, [], seed, False
        info = {"task": self.task.model_copy(deep=True), "tools": json.loads(
            json.dumps(self.tool_schemas))}
        return payload.observation.text, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.task is None:
            raise EpisodeError("step() before reset(): call env.reset(seed=...) first")
        if self._done:
            raise EpisodeError(
                "the episode is over; call reset() for a new one, or fork() before the end")
        if not isinstance(action, str):
            raise TypeError(f"an action is text (str), not {type(action).__name__}")
        payload = StepPayload.model_validate(self._ask("step", {"message": action}))
        meta = payload.observation.metadata
        turn = Turn.model_validate(meta["turn"])
        self.history.append(turn)
        self.turn += 1
        self._done = payload.done
        info = {"turn": turn.index, "calls": [c.model_copy(deep=True) for c in turn.calls],
                "results": [r.model_copy(deep=True) for r in turn.results],
                "parse_error": turn.parse_error, "answer": turn.answer}
        return (payload.observation.text, float(payload.reward or 0.0), meta["terminated"],
                meta["truncated"], info)

    def fork(self) -> Self:
        """A new server session whose env is this one's `env.fork()`, driven by a new env."""
        if not self.server.fork:
            raise ForkError(f"the server at {self.url} cannot fork: it is an OpenEnv server "
                            "without treegym's fork extension; serve the env with "
                            "`treegym serve`, or roll out in chain mode")
        session_id = self._ask("fork")["session_id"]
        child = type(self)(self.url, token=self.token, timeout=self.timeout,
                           session_id=session_id, server=self.server)
        child.task = self.task.model_copy(deep=True) if self.task is not None else None
        child.tool_schemas = self.tool_schemas
        child.history = [t.model_copy(deep=True) for t in self.history]
        child.turn, child._seed, child._done = self.turn, self._seed, self._done
        return child

    def close(self) -> None:
        """Close the server session (and with it its sandbox), then the connection."""
        if self._closed:
            return
        try:
            self._ws.send(json.dumps({"type": "close"}))
        except Exception:  # noqa: BLE001 - the server may be gone already; closing anyway
            pass
        self._ws.close()
        self._closed = True

    def state(self) -> dict[str, Any]:
        """OpenEnv's session state: episode_id, step_count, done."""
        return self._ask("state")


def make_remote(env_id: str, **options: Any) -> RemoteEnv:
    """The env for a `remote:URL` id."""
    return RemoteEnv(env_id[len(REMOTE_PREFIX):], **options)
