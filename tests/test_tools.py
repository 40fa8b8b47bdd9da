"""Tool schemas come from signatures and docstrings; calls are validated against them."""

from __future__ import annotations

from typing import Literal

import pytest

from treegym import Tool, ToolCall, ToolError, ToolSet, tool
from treegym.tools import tools_of


@tool
def search(query: str, limit: int = 5, mode: Literal["fast", "exact"] = "fast") -> list[str]:
    """Search the corpus for passages.

    Longer explanation that the model does not need.

    Args:
        query: words to look for,
            one or more.
        limit: how many passages to return.
        mode: how to match.

    Returns:
        The passages.
    """
    if not query:
        raise ToolError("query is empty")
    return [f"{mode}:{query}"] * limit


def test_schema_is_openai_function_shape() -> None:
    schema = Tool.from_function(search).schema
    assert schema == {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the corpus for passages.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "words to look for, one or more."},
                    "limit": {"type": "integer", "default": 5,
                              "description": "how many passages to return."},
                    "mode": {"type": "string", "enum": ["fast", "exact"], "default": "fast",
                             "description": "how to match."},
                },
                "required": ["query"],
                "additionalProperties": False,
            },
        },
    }


def test_decorator_options_and_inheritance_order() -> None:
    class Base:
        @tool
        def ping(self) -> str:
            """Ping."""
            return "pong"

    class Child(Base):
        @tool(name="find", description="Find things.")
        def lookup(self, what: str) -> str:
            return what

    found = tools_of(Child)
    assert [t.name for t in found] == ["ping", "find"]
    assert found[1].schema["function"]["description"] == "Find things."
    assert found[1].usage == "find(what)"
    assert Child().lookup("x") == "x"  # the method itself is untouched


def test_a_parameter_named_title_survives_title_stripping() -> None:
    def post(title: str, body: str = "") -> str:
        """Post a note."""
        return title

    props = Tool.from_function(post).schema["function"]["parameters"]["properties"]
    assert set(props) == {"title", "body"} and "title" not in props["title"]


def test_star_args_are_refused_at_definition() -> None:
    def anything(*args: str) -> str:
        return ""

    with pytest.raises(TypeError, match=r"\*args/\*\*kwargs can't be described"):
        Tool.from_function(anything)


def test_execute_validates_coerces_and_serialises() -> None:
    tools = ToolSet([Tool.from_function(search)])
    result = tools.execute(ToolCall(id="c", name="search", arguments={"query": "q", "limit": 2}))
    assert result.ok and result.output == '["fast:q", "fast:q"]'
    bad = tools.execute(ToolCall(id="c", name="search", arguments={"query": "q", "mode": "slow"}))
    assert bad.error == bad.output
    assert "argument 'mode': Input should be 'fast' or 'exact'" in bad.error
    refused = tools.execute(ToolCall(id="c", name="search", arguments={"query": ""}))
    assert refused.error == "search failed: query is empty"


def test_result_equality_ignores_timing_only() -> None:
    tools = ToolSet([Tool.from_function(search)])
    call = ToolCall(id="c", name="search", arguments={"query": "q"})
    first, second = tools.execute(call), tools.execute(call)
    assert first == second and first.model_copy(update={"seconds": 9.0}) == first
    assert first != first.model_copy(update={"output": "other"})
