"""The wire records of `treegym serve`: OpenEnv's message shapes, plus the fork extension.

They follow openenv-core 0.3.0 (`openenv.core.env_server.types`) field for field, so that
its `GenericEnvClient` drives a treegym env unchanged: a session sends `{"type": "reset" |
"step" | "state" | "close", "data": {...}}` on `/ws`, and gets back `{"type":
"observation" | "state" | "error", "data": {...}}`, where an observation's data is
`{"observation": {...}, "reward": r, "done": d}`. The fork extension adds `{"type":
"fork"}` and its reply `{"type": "fork", "data": {"session_id": ...}}`.

Unlike OpenEnv's serializer, which drops an observation's `metadata`, treegym keeps it
inside the observation dict: it carries the tool schemas on reset and the whole `Turn`
(calls, results, errors) on each step, which is what a `RemoteEnv` rebuilds its history
from.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORK_VERSION = 1  # /metadata's `fork_version`: bumped if the fork messages ever change


class ErrorCode(str, Enum):
    """OpenEnv's `WSErrorCode` values, and the two the fork extension adds."""

    INVALID_JSON = "INVALID_JSON"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    EXECUTION_ERROR = "EXECUTION_ERROR"
    CAPACITY_REACHED = "CAPACITY_REACHED"
    FACTORY_ERROR = "FACTORY_ERROR"
    SESSION_ERROR = "SESSION_ERROR"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    UNAUTHORIZED = "UNAUTHORIZED"


class TextAction(BaseModel):
    """OpenEnv's text action: one field, the action text the env's `step` gets."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="The agent's action text: tool calls or an answer.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class TextObservation(BaseModel):
    """What the env said, plus `metadata` (tool schemas on reset, the `Turn` on a step)."""

    model_config = ConfigDict(extra="forbid")

    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class StepPayload(BaseModel):
    """An observation reply's `data`, and the body of the HTTP `/reset` and `/step` replies."""

    observation: TextObservation
    reward: float | None = None
    done: bool = False


class SessionState(BaseModel):
    """OpenEnv's `State` (episode_id, step_count) with treegym's episode fields."""

    episode_id: str | None = None
    step_count: int = 0
    session_id: str | None = None
    env_id: str
    done: bool = False


class ResetData(BaseModel):
    """A reset's `data`: OpenEnv's `ResetRequest` fields, and the task options of reset."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(None, ge=0)
    episode_id: str | None = Field(None, max_length=255)
    options: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = Field(None, description="HTTP only: reset this session.")


class WSMessage(BaseModel):
    """One client message on `/ws`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["reset", "step", "state", "close", "fork"]
    data: dict[str, Any] = Field(default_factory=dict)


class WSReply(BaseModel):
    """One server message on `/ws`."""

    type: Literal["observation", "state", "error", "fork"]
    data: dict[str, Any]


class StepRequest(BaseModel):
    """HTTP `/step`: OpenEnv's body, with the session it steps (from `/reset`'s reply)."""

    model_config = ConfigDict(extra="forbid")

    action: TextAction
    session_id: str | None = None
    timeout_s: float | None = Field(None, gt=0)
    request_id: str | None = Field(None, max_length=255)


class SessionRequest(BaseModel):
    """HTTP `/fork` and `/close`: the session to act on."""

    model_config = ConfigDict(extra="forbid")

    session_id: str


class ServerMetadata(BaseModel):
    """`/metadata`: OpenEnv's `EnvironmentMetadata`, plus what a `RemoteEnv` checks."""

    name: str
    description: str
    readme_content: str | None = None
    version: str | None = None
    author: str | None = None
    documentation_url: str | None = None
    fork: bool = True
    fork_version: int = FORK_VERSION
    env_options: dict[str, Any] = Field(default_factory=dict)
    max_turns: int
    max_sessions: int
    idle_timeout_s: float
    max_message_bytes: int


def error_reply(code: ErrorCode, message: str, **extra: Any) -> WSReply:
    return WSReply(type="error", data={"message": message, "code": code.value, **extra})
