"""Pydantic records for what an episode produced, and their JSONL round-trip.

Records are plain data: the learner and the viewer read them from files, never from live
envs, so every field must survive `model_dump_json` → `model_validate_json` unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RecordError


class Record(BaseModel):
    """Base of all records: unknown fields are an error, so typos in files surface early."""

    model_config = ConfigDict(extra="forbid")


class Task(Record):
    """One problem instance: what the agent is told, what counts as solved, how to set up."""

    id: str
    prompt: str
    answer: Any = Field(default=None, description="Ground truth used by the reward.")
    setup: dict[str, Any] = Field(default_factory=dict, description="How to build the world.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class ToolCall(Record):
    """A call the model asked for, as parsed from its action (OpenAI function-call shape)."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResult(Record):
    """What a tool returned, or why the call was refused."""

    call_id: str
    name: str
    output: str
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def __eq__(self, other: object) -> bool:
        # Timing measures the machine, not the world: two runs of the same call on the
        # same world are the same result, which replay and `check_env` rely on.
        if not isinstance(other, ToolResult):
            return NotImplemented
        return self.model_dump(exclude={"seconds"}) == other.model_dump(exclude={"seconds"})

    __hash__ = None  # type: ignore[assignment]


class Turn(Record):
    """One agent turn: the action text, what it called, and what the world answered."""

    index: int
    action: str
    calls: list[ToolCall] = Field(default_factory=list)
    results: list[ToolResult] = Field(default_factory=list)
    answer: str | None = None
    parse_error: str | None = None
    observation: str
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False


class Episode(Record):
    """A whole chain trajectory: the task, the tools offered, and every turn."""

    env_id: str | None = None
    seed: int | None = None
    task: Task
    tools: list[dict[str, Any]] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)

    @property
    def total_reward(self) -> float:
        return sum(turn.reward for turn in self.turns)

    @property
    def done(self) -> bool:
        return bool(self.turns) and (self.turns[-1].terminated or self.turns[-1].truncated)


R = TypeVar("R", bound=BaseModel)


def write_jsonl(path: str | Path, records: Iterable[BaseModel], *, append: bool = True) -> int:
    """Write one record per line, flushing each, so an interrupted run keeps what it wrote."""
    path = Path(path)
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(record.model_dump_json() + "\n")
                fh.flush()
                count += 1
    except OSError as exc:
        raise RecordError(
            f"cannot write records to {path}: {exc.strerror}; choose a writable path"
        ) from exc
    return count


def read_jsonl(path: str | Path, model: type[R]) -> Iterator[R]:
    """Yield records from a JSONL file; a bad line raises `RecordError` naming file and line."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise RecordError(f"cannot read records from {path}: {exc.strerror}") from exc
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield model.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "record"
                raise RecordError(
                    f"{path}:{lineno}: not a valid {model.__name__} ({where}: {first['msg']})"
                ) from exc
