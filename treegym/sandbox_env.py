"""`SandboxEnv`: an AgentEnv whose World includes a forkable tool sandbox.

The sandbox is an attribute with its own `fork()`, so `AgentEnv.fork()` forks it rather
than copying it: files and interpreter memory travel to the branch with the episode.
Each reset opens a fresh sandbox, so no episode sees another's leftovers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .env import AgentEnv, EnvConfig
from .errors import EpisodeError
from .sandboxes import ExecResult, Sandbox, SandboxError, open_sandbox
from .tools import tool


class SandboxConfig(EnvConfig):
    sandbox: Literal["local", "docker"] = Field(
        "local", description="Backend that runs tool calls; see treegym.sandboxes."
    )
    sandbox_options: dict[str, Any] = Field(
        default_factory=dict, description="Passed to open_sandbox, e.g. limits."
    )
    tool_timeout: float = Field(20.0, gt=0, description="Wall seconds per tool call.")


class SandboxEnv(AgentEnv):
    """Base for tasks whose tools act on files, a shell or a live interpreter."""

    Config = SandboxConfig
    config: SandboxConfig
    needs_sandbox = True

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__(render_mode=render_mode, **options)
        self.sandbox: Sandbox | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        self._check_open()
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None
        self.sandbox = open_sandbox(self.config.sandbox, **self.config.sandbox_options)
        return super().reset(seed=seed, options=options)

    @property
    def box(self) -> Sandbox:
        """The live sandbox; tools use this so a missing reset is a clear error."""
        if self.sandbox is None:
            raise EpisodeError("no sandbox yet: call env.reset() first")
        return self.sandbox

    def close(self) -> None:
        super().close()
        self.sandbox = None


class PythonSandboxEnv(SandboxEnv):
    """A SandboxEnv with the persistent `python(code)` tool most tasks want; a subclass
    may redefine `python` to describe it in its own words."""

    @tool
    def python(self, code: str) -> str:
        """Run Python code in a persistent interpreter; print what you want to see.

        Args:
            code: Python source. Variables and imports persist between calls.
        """
        return describe(self.box.python(code, timeout=self.config.tool_timeout))


def describe(result: ExecResult) -> str:
    """The text a model sees for a command: its output, then why it stopped if it failed."""
    parts = [text.rstrip("\n") for text in (result.stdout, result.stderr) if text]
    if result.truncated:
        parts.append("[output cut at the sandbox's output limit]")
    if result.timed_out:
        parts.append("[timed out; the command was killed]")
    elif result.limit:
        parts.append(f"[stopped: {result.limit} limit reached]")
    elif result.exit_code:
        parts.append(f"[exit code {result.exit_code}]")
    return "\n".join(parts) or "[no output]"


__all__ = ["PythonSandboxEnv", "SandboxConfig", "SandboxEnv", "SandboxError", "describe"]
