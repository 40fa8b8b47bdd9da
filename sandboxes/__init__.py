"""Forkable tool sandboxes. `open_sandbox("local")` is the default, daemon-free backend.

`open_sandbox("docker")` runs the same forking worker inside one hardened container per
tree (files and interpreter memory fork in milliseconds); `fork_method="commit"` gives a
container per branch instead, forked with `docker commit` (files only, durable images).
"""

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
        if opts.get("fork_method") == "commit":
            from .docker import DockerSandbox

            return DockerSandbox(**{k: v for k, v in opts.items() if k != "fork_method"})
        from .docker_tree import DockerTreeSandbox

        return DockerTreeSandbox(**opts)
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
