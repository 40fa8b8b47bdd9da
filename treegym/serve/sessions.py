"""The session table of `treegym serve`: one env per session, forks, idle reaping.

Every session owns its env (and so its sandbox); the table is the one place that makes,
forks and closes them, so `close_all` on shutdown provably leaves no sandbox behind.
Env calls block (a tool call runs code), so they run in worker threads, one at a time per
session under its lock, while other sessions go on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..env import AgentEnv
from ..registry import make
from .protocol import ErrorCode, SessionState, StepPayload, TextObservation


class ServeConfig(BaseModel):
    """What `treegym serve` serves, and its limits."""

    model_config = ConfigDict(extra="forbid")

    env_id: str
    env_options: dict[str, Any] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_sessions: int = Field(64, ge=1)
    token: str | None = None
    idle_timeout_s: float = Field(600.0, gt=0)
    max_message_bytes: int = Field(1 << 20, ge=1024)


class SessionError(Exception):
    """A request the table refuses; `code` is the OpenEnv error code it is sent with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Session:
    """One env and what the table knows of it."""

    def __init__(self, session_id: str, env: AgentEnv) -> None:
        self.id = session_id
        self.env = env
        self.lock = asyncio.Lock()
        self.last_active = time.monotonic()
        self.episode_id: str | None = None
        self.step_count = 0
        self.done = False
        self.attached = False  # a /ws connection drives it

    def touch(self) -> None:
        self.last_active = time.monotonic()


class SessionTable:
    """Live sessions by id, capped at `max_sessions`, forks included."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.closed_why: dict[str, str] = {}  # why a recent session is gone, for its errors

    def _room(self) -> None:
        if len(self.sessions) >= self.config.max_sessions:
            raise SessionError(
                ErrorCode.CAPACITY_REACHED,
                f"the server holds {len(self.sessions)} sessions, its --max-sessions limit "
                "(forks count too); close a session, or restart with a larger --max-sessions")

    def _add(self, env: AgentEnv) -> Session:
        session = Session(uuid.uuid4().hex, env)
        self.sessions[session.id] = session
        return session

    async def create(self) -> Session:
        self._room()
        try:
            env = await asyncio.to_thread(make, self.config.env_id, **self.config.env_options)
        except Exception as exc:
            raise SessionError(ErrorCode.FACTORY_ERROR,
                               f"cannot make {self.config.env_id}: {exc}") from exc
        return self._add(env)

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            why = self.closed_why.get(session_id, "it was never opened here")
            raise SessionError(ErrorCode.SESSION_ERROR,
                               f"unknown session {session_id!r}: {why}; start a new one with "
                               "a reset (on a new /ws connection, or POST /reset)")
        session.touch()
        return session

    async def reset(self, session: Session, seed: int | None, episode_id: str | None,
                    options: dict[str, Any]) -> StepPayload:
        async with session.lock:
            text, info = await self._call(session, session.env.reset, seed=seed,
                                          options=options)
            session.episode_id = episode_id or uuid.uuid4().hex
            session.step_count = 0
            session.done = False
        metadata = {"session_id": session.id, "episode_id": session.episode_id, "seed": seed,
                    "task": info["task"].model_dump(mode="json"), "tools": info["tools"],
                    "max_turns": session.env.config.max_turns}
        return StepPayload(observation=TextObservation(text=text, metadata=metadata))

    async def step(self, session: Session, action: str) -> StepPayload:
        async with session.lock:
            text, reward, terminated, truncated, _ = await self._call(
                session, session.env.step, action)
            session.step_count += 1
            session.done = terminated or truncated
            turn = session.env.history[-1]
        metadata = {"session_id": session.id, "turn": turn.model_dump(mode="json"),
                    "terminated": terminated, "truncated": truncated}
        return StepPayload(observation=TextObservation(text=text, metadata=metadata),
                           reward=reward, done=session.done)

    def state(self, session: Session | None) -> SessionState:
        if session is None:
            return SessionState(env_id=self.config.env_id)
        return SessionState(episode_id=session.episode_id, step_count=session.step_count,
                            session_id=session.id, env_id=self.config.env_id,
                            done=session.done)

    async def fork(self, session: Session) -> Session:
        """A new session whose env is `env.fork()` of this one: files, interpreter, episode."""
        self._room()
        async with session.lock:
            child_env = await self._call(session, session.env.fork)
        child = self._add(child_env)
        child.episode_id, child.step_count, child.done = (
            session.episode_id, session.step_count, session.done)
        return child

    async def _call(self, session: Session, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an env call in a thread; its failure is an error of this session alone."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:
            raise SessionError(ErrorCode.EXECUTION_ERROR,
                               f"{type(exc).__name__}: {exc}") from exc
        finally:
            session.touch()

    async def close(self, session_id: str, why: str = "it was closed") -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        self.closed_why[session_id] = why
        if len(self.closed_why) > 4 * self.config.max_sessions:  # keep the memo bounded
            self.closed_why.pop(next(iter(self.closed_why)))
        async with session.lock:
            await asyncio.to_thread(session.env.close)

    async def reap(self) -> None:
        """Close sessions idle longer than `idle_timeout_s`, every few seconds, forever."""
        limit = self.config.idle_timeout_s
        while True:
            await asyncio.sleep(min(limit / 4, 5.0))
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if now - session.last_active > limit and not session.lock.locked():
                    await self.close(session.id, f"it was idle for more than {limit:g} s "
                                     "(--idle-timeout)")

    def close_all(self) -> None:
        """Close every session's env now: the server is going away."""
        for session_id in list(self.sessions):
            self.sessions.pop(session_id).env.close()
