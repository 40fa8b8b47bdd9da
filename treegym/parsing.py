"""Reading tool calls and a final answer out of a model's action text.

The format is Hermes/Qwen's, which common chat templates already teach models:
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, any number per action, and an
optional `<answer>...</answer>` that ends the episode. Parsing never raises: anything
malformed becomes a message the model reads next turn.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, Field

from .records import ToolCall

_CALL_OPEN = "<tool_call>"
_CALL_CLOSE = "</tool_call>"
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_EXAMPLE = '<tool_call>{"name": "TOOL", "arguments": {...}}</tool_call>'


class ParsedAction(BaseModel):
    """The calls, answer and problems found in one action, in the order they appeared."""

    calls: list[ToolCall] = Field(default_factory=list)
    answer: str | None = None
    errors: list[str] = Field(default_factory=list)


def _parse_call(body: str, call_id: str) -> ToolCall | str:
    """One `<tool_call>` body as a ToolCall, or the reason it isn't one."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return (
            f"tool call {call_id} is not valid JSON ({exc.msg} at char {exc.pos}). "
            f"Write {_EXAMPLE}"
        )
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return f'tool call {call_id} needs a string "name". Write {_EXAMPLE}'
    arguments = data.get("arguments", {})
    if isinstance(arguments, str):  # OpenAI sends arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return f"tool call {call_id}: arguments are not valid JSON ({exc.msg})"
    if not isinstance(arguments, dict):
        return f'tool call {call_id}: "arguments" must be a JSON object. Write {_EXAMPLE}'
    extra = sorted(set(data) - {"name", "arguments"})
    if extra:
        return f'tool call {call_id}: unexpected keys {extra}; only "name" and "arguments"'
    return ToolCall(id=call_id, name=data["name"], arguments=arguments)


def parse_action(text: str, *, max_calls: int = 8) -> ParsedAction:
    """Find every tool call and the answer in `text`."""
    parsed = ParsedAction()
    pos = 0
    while (start := text.find(_CALL_OPEN, pos)) != -1:
        body_start = start + len(_CALL_OPEN)
        end = text.find(_CALL_CLOSE, body_start)
        call_id = f"call_{len(parsed.calls) + len(parsed.errors)}"
        if end == -1:
            parsed.errors.append(f"tool call {call_id} has no closing {_CALL_CLOSE}")
            break
        if len(parsed.calls) >= max_calls:
            parsed.errors.append(
                f"more than {max_calls} tool calls in one turn; the rest were skipped"
            )
            break
        item = _parse_call(text[body_start:end].strip(), call_id)
        if isinstance(item, str):
            parsed.errors.append(item)
        else:
            parsed.calls.append(item)
        pos = end + len(_CALL_CLOSE)
    answers = _ANSWER.findall(text)
    if len(answers) > 1:
        parsed.errors.append(f"{len(answers)} <answer> blocks; give exactly one to finish")
    elif answers:
        parsed.answer = answers[0].strip()
    elif "<answer>" in text:
        parsed.errors.append("<answer> has no closing </answer>")
    return parsed
