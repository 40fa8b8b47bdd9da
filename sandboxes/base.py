"""The contract every sandbox backend keeps.

A sandbox is where model-written tool calls run: a working directory, a shell and a
persistent Python interpreter. `fork()` is what makes treegym different: it copies the
files *and* the interpreter's memory, so a branch of a rollout tree continues from the
same world without re-running anything.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SandboxError(RuntimeError):
    """A sandbox could not do what was asked; the message names the cause and the way out."""


class SandboxDead(SandboxError):
    """The sandbox can no longer run anything (its worker died or was killed)."""


class LimitExceeded(SandboxError):
    """A resource limit was hit; `limit` names which one (e.g. "memory", "processes")."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class ExecResult(BaseModel):
    """What one command or interpreter call produced."""

    model_config = ConfigDict(frozen=True)

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    timed_out: bool = False
    truncated: bool = False
    limit: str | None = Field(
        default=None, description="The resource limit that stopped the call, if one did."
    )
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.limit is None


class SandboxLimits(BaseModel):
    """Caps applied to everything that runs inside a sandbox. The defaults are safe."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(30.0, gt=0, description="Default wall-clock seconds per call.")
    cpu_seconds: int = Field(60, gt=0, description="CPU seconds per call's process tree.")
    memory_mb: int = Field(1024, gt=16, description="Address-space cap per process, MiB.")
    max_processes: int = Field(64, gt=1, description="Processes alive at once.")
    max_file_mb: int = Field(256, gt=0, description="Largest file a process may write, MiB.")
    max_output_bytes: int = Field(64_000, gt=0, description="Captured stdout/stderr per call.")
    background: bool = Field(False, description="Let processes a python() call started "
                             "outlive it, until the branch forks; off, they are killed when "
                             "the call ends, so none escapes the call's time and CPU limits.")
    network: bool = Field(False, description="Allow network access. Off by default.")

    @classmethod
    def merge(cls, limits: SandboxLimits | dict[str, Any] | None,
              overrides: dict[str, Any]) -> SandboxLimits:
        """Limits from a model or a plain dict (as env configs carry them), with keyword
        overrides on top; an unknown or invalid field is a clear error, not an AttributeError."""
        base = limits.model_dump() if isinstance(limits, SandboxLimits) else dict(limits or {})
        try:
            return cls.model_validate({**base, **overrides})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                                 for err in e.errors())
            raise SandboxError(f"bad sandbox limits: {problems}") from None


class Capabilities(BaseModel):
    """What a backend can copy on `fork()`, and how."""

    model_config = ConfigDict(frozen=True)

    backend: str
    forks_files: bool
    forks_memory: bool
    fork_method: str = Field(description="How the world is copied, e.g. 'overlayfs', 'copy'.")
    isolation: list[str] = Field(default_factory=list)
    notes: str = ""


class Sandbox(abc.ABC):
    """A forkable world for tool calls. Use it as a context manager or call `close()`."""

    limits: SandboxLimits

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abc.abstractmethod
    def run(self, cmd: str, timeout: float | None = None) -> ExecResult:
        """Run a bash command in the sandbox's working directory."""

    @abc.abstractmethod
    def python(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run code in the sandbox's persistent interpreter; state survives between calls."""

    @abc.abstractmethod
    def write_file(self, path: str, content: str | bytes) -> None: ...

    @abc.abstractmethod
    def read_file(self, path: str) -> bytes: ...

    @abc.abstractmethod
    def listdir(self, path: str = ".") -> list[str]: ...

    @abc.abstractmethod
    def fork(self) -> Sandbox:
        """A new sandbox with a copy of the files and the interpreter's memory."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free every process, mount and temp dir. Safe to call twice."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
