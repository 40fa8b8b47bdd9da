"""Envs over the wire: `treegym serve` puts a registered env behind OpenEnv's protocol plus
a fork message, and `RemoteEnv` is the AgentEnv that talks to such a server."""

from .remote import RemoteEnv

__all__ = ["RemoteEnv"]
