"""Forkable tool sandboxes. `open_sandbox("local")` is the default, daemon-free backend."""

from __future__ import annotations

from typing import Any

from .base import (
    Capabilities,
    ExecResult,
    LimitExceeded,
    Sandbox,
    SandboxDead,
    SandboxError,
    SandboxLimits,
)

BACKENDS = ("local", "docker")


def open_sandbox(kind: str = "local", **opts: Any) -> Sandbox:
    """Open a sandbox of the given backend; `opts` go to that backend's constructor."""
    if kind == "local":
        from .local import LocalSandbox

        return LocalSandbox(**opts)
    if kind == "docker":
        from .docker import DockerSandbox

        return DockerSandbox(**opts)
    raise SandboxError(f"unknown sandbox kind {kind!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "Capabilities",
    "ExecResult",
    "LimitExceeded",
    "Sandbox",
    "SandboxDead",
    "SandboxError",
    "SandboxLimits",
    "open_sandbox",
]
