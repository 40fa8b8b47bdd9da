"""treegym: an agent-environment gym whose rollouts are trees.

A branch point copies the model's KV prefix and the tool sandbox's world together, so
each branch continues without regenerating or re-executing anything.
"""

from .env import AgentEnv, EnvConfig
from .errors import (
    ConfigError,
    EpisodeError,
    ForkError,
    RecordError,
    TreegymError,
    UnknownEnvError,
)
from .parsing import ParsedAction, parse_action
from .records import (
    Episode,
    Node,
    Task,
    ToolCall,
    ToolResult,
    Trajectory,
    Tree,
    Turn,
    read_jsonl,
    write_jsonl,
)
from .registry import env_info, list_envs, load_plugins, make, register, spec
from .tools import Tool, ToolError, ToolSet, tool

__version__ = "0.1.0"

from . import envs  # noqa: E402  - registers the bundled tasks

load_plugins()

__all__ = [
    "AgentEnv",
    "ConfigError",
    "EnvConfig",
    "Episode",
    "EpisodeError",
    "ForkError",
    "Node",
    "ParsedAction",
    "RecordError",
    "Task",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolResult",
    "ToolSet",
    "TreegymError",
    "Trajectory",
    "Tree",
    "Turn",
    "UnknownEnvError",
    "env_info",
    "envs",
    "list_envs",
    "load_plugins",
    "make",
    "parse_action",
    "read_jsonl",
    "register",
    "spec",
    "tool",
    "write_jsonl",
]
