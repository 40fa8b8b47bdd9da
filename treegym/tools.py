"""Tools the model may call, with OpenAI-style schemas built from signatures and docstrings.

A tool is a plain (method) function marked with `@tool`. Its parameters become a pydantic
model, so the schema the model is shown and the validation its calls get can never drift
apart. Calls that don't fit come back as readable errors, never as exceptions: a rollout
must survive whatever text a model writes.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .errors import TreegymError
from .records import ToolCall, ToolResult
from .sandboxes.base import SandboxError

logger = logging.getLogger(__name__)

_TOOL_ATTR = "__treegym_tool__"
_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ToolError(Exception):
    """Raise from a tool to tell the model its call failed; the message becomes the output."""


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its first paragraph and per-argument text."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    header = next((i for i, line in enumerate(lines) if _ARGS_HEADER.match(line)), len(lines))
    summary = " ".join(inspect.cleandoc("\n".join(lines[:header])).split("\n\n")[0].split())
    args: dict[str, str] = {}
    current: str | None = None
    for line in lines[header + 1 :]:
        if line.strip() and not line[0].isspace():
            break  # the next section ("Returns:", ...) starts
        match = _ARG_LINE.match(line)
        if match and len(line) - len(line.lstrip()) <= 4:
            current = match.group(1).lstrip("*")
            args[current] = match.group(2).strip()
        elif current and line.strip():
            args[current] = f"{args[current]} {line.strip()}"
    return summary, args


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's auto-generated titles: they cost prompt tokens and say nothing."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "title" and isinstance(value, str):
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
            else:
                out[key] = _strip_titles(value)
        return out
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    return schema


@dataclass(frozen=True)
class Tool:
    """A callable's name, description and argument model; `schema` is what the model sees."""

    name: str
    description: str
    args_model: type[BaseModel]
    fn: Callable[..., Any]
    is_method: bool

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        summary, arg_docs = _parse_docstring(fn.__doc__)
        hints = typing.get_type_hints(fn, include_extras=True)
        params = list(inspect.signature(fn).parameters.values())
        is_method = bool(params) and params[0].name == "self"
        if is_method:
            params = params[1:]
        fields: dict[str, Any] = {}
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(
                    f"tool {fn.__qualname__}: *args/**kwargs can't be described to a model; "
                    "name every parameter"
                )
            annotation = hints.get(param.name, str)
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (
                annotation,
                Field(default, description=arg_docs.get(param.name) or None),
            )
        tool_name = name or fn.__name__
        model = create_model(  # type: ignore[call-overload]
            f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields
        )
        return cls(tool_name, description or summary, model, fn, is_method)

    @property
    def schema(self) -> dict[str, Any]:
        parameters = _strip_titles(self.args_model.model_json_schema())
        parameters.setdefault("properties", {})
        parameters["additionalProperties"] = False
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
            },
        }

    @property
    def usage(self) -> str:
        """A one-line signature for error messages, e.g. `move(direction)`."""
        parts = []
        for pname, info in self.args_model.model_fields.items():
            parts.append(pname if info.is_required() else f"{pname}={info.default!r}")
        return f"{self.name}({', '.join(parts)})"


def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None,
    description: str | None = None,
) -> Any:
    """Mark a function or env method as a tool; the function itself stays callable as is."""

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _TOOL_ATTR, {"name": name, "description": description})
        return f

    return mark(fn) if fn is not None else mark


def tools_of(cls: type) -> list[Tool]:
    """The `@tool` methods of a class, in definition order (base classes first)."""
    seen: dict[str, Tool] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            marks = getattr(value, _TOOL_ATTR, None)
            if marks is not None:
                built = Tool.from_function(value, **marks)
                seen.pop(attr, None)
                seen[attr] = built
    return list(seen.values())


def _describe_validation(tool_: Tool, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        arg = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "missing":
            problems.append(f"missing argument '{arg}'")
        elif err["type"] == "extra_forbidden":
            problems.append(f"unexpected argument '{arg}'")
        else:
            problems.append(f"argument '{arg}': {err['msg']}")
    return f"bad call to {tool_.name}: {'; '.join(problems)}. Usage: {tool_.usage}"


class ToolSet:
    """Looks up, validates and runs calls against a fixed list of tools."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools = {t.name: t for t in tools}

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    @property
    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self._tools.values()]

    def usage(self) -> str:
        return ", ".join(t.usage for t in self._tools.values()) or "(none)"

    def execute(self, call: ToolCall, owner: Any = None) -> ToolResult:
        """Run one call. Every failure, the tool's own included, becomes an error result."""
        start = time.perf_counter()

        def failed(message: str) -> ToolResult:
            return ToolResult(
                call_id=call.id, name=call.name, output=message, error=message,
                seconds=time.perf_counter() - start,
            )

        tool_ = self._tools.get(call.name)
        if tool_ is None:
            return failed(f"unknown tool '{call.name}'. Available tools: {self.usage()}")
        try:
            args = tool_.args_model.model_validate(call.arguments)
        except ValidationError as exc:
            return failed(_describe_validation(tool_, exc))
        kwargs = {field: getattr(args, field) for field in tool_.args_model.model_fields}
        try:
            value = tool_.fn(owner, **kwargs) if tool_.is_method else tool_.fn(**kwargs)
        except ToolError as exc:
            return failed(f"{call.name} failed: {exc}")
        except (TreegymError, SandboxError) as exc:  # e.g. a dead sandbox: expected, no trace
            return failed(f"{call.name} failed: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a tool bug must not end the rollout
            logger.exception("tool %s raised", call.name)
            return failed(f"{call.name} failed: {type(exc).__name__}: {exc}")
        output = value if isinstance(value, str) else json.dumps(value, default=str)
        return ToolResult(
            call_id=call.id, name=call.name, output=output,
            seconds=time.perf_counter() - start,
        )
