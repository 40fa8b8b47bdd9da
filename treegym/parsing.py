"""Reading tool calls and a final answer out of a model's action text.

The format is Hermes/Qwen's, which common chat templates already teach models:
a JSON object with "name" and "arguments" between `<tool_call>` and `</tool_call>`, any
number per action, and an optional answer between `<answer>` and `</answer>` that ends the
episode. Parsing never raises: anything malformed becomes a message the model reads next
turn. Hints describe the format in words: a weak model copies a literal example such as
`<answer>...</answer>`, placeholder and all, so such a placeholder answer is a format error
too, not an answer to score.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from pydantic import BaseModel, Field

from .records import ToolCall

_CALL_OPEN = "<tool_call>"
_CALL_CLOSE = "</tool_call>"
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
CALL_FORMAT = ('a JSON object with "name" (the tool\'s name) and "arguments" (an object of '
               "its arguments) between <tool_call> and </tool_call>")
ANSWER_FORMAT = "your final answer, opened with <answer> and closed with </answer>"
# What a hint puts where the answer goes: envs' prompts and chat templates write "...", and
# a model that copies ANSWER_FORMAT itself gets the words between its tags.
PLACEHOLDER_ANSWERS = frozenset({"...", "…", *(a.strip() for a in _ANSWER.findall(ANSWER_FORMAT))})
_CODE_BLOCK = re.compile(r"```(?:python|py)[ \t]*\n(.*?)```", re.DOTALL)
# Deeper values parse, but deep-copying them into records (and serialising those) recurses
# past Python's limit a few hundred levels down; no real tool needs more than a handful.
MAX_JSON_DEPTH = 100


def tool_call_text(name: str, arguments: dict[str, Any]) -> str:
    """One call written the way chat templates teach models to write it, so scripted and
    typed actions read like sampled ones (and parse back to the same call)."""
    return f"{_CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments})}\n{_CALL_CLOSE}"


def answer_text(answer: str) -> str:
    """A final answer in the form the parser reads."""
    return f"<answer>{answer}</answer>"


class ParsedAction(BaseModel):
    """The calls, answer and problems found in one action, in the order they appeared."""

    calls: list[ToolCall] = Field(default_factory=list)
    answer: str | None = None
    errors: list[str] = Field(default_factory=list)


def _depth(value: Any) -> int:
    """How many arrays/objects deep `value` goes; iterative, so depth itself can't overflow."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def _loads(text: str) -> tuple[Any, str | None]:
    """`json.loads` whose every failure is a reason for the model, never an exception.

    Besides bad syntax, the decoder raises RecursionError on deep nesting and ValueError
    on an integer longer than Python converts; both come from model text, so both are the
    model's mistake to read about, not the rollout's to crash on.
    """
    too_deep = f"nested too deeply: at most {MAX_JSON_DEPTH} levels of [ ] and {{ }}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at char {exc.pos}"
    except RecursionError:
        return None, too_deep
    except ValueError:  # json.loads' only other ValueError: the integer digit limit
        return None, f"number too long: at most {sys.get_int_max_str_digits()} digits"
    return (None, too_deep) if _depth(value) > MAX_JSON_DEPTH else (value, None)


def _parse_call(body: str, call_id: str) -> ToolCall | str:
    """One `<tool_call>` body as a ToolCall, or the reason it isn't one."""
    data, problem = _loads(body)
    if problem is not None:
        return f"tool call {call_id} is not valid JSON ({problem}). Write {CALL_FORMAT}"
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return f'tool call {call_id} needs a string "name". Write {CALL_FORMAT}'
    arguments = data.get("arguments", {})
    if isinstance(arguments, str):  # OpenAI sends arguments as a JSON string
        arguments, problem = _loads(arguments) if arguments.strip() else ({}, None)
        if problem is not None:
            return f"tool call {call_id}: arguments are not valid JSON ({problem})"
    if not isinstance(arguments, dict):
        return f'tool call {call_id}: "arguments" must be a JSON object. Write {CALL_FORMAT}'
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
    elif answers and answers[0].strip() in PLACEHOLDER_ANSWERS:
        parsed.errors.append(f"the answer {answers[0].strip()!r} is the placeholder of a format "
                             f"hint, not an answer; finish with {ANSWER_FORMAT}")
    elif answers:
        parsed.answer = answers[0].strip()
    elif "<answer>" in text:
        parsed.errors.append("<answer> has no closing </answer>")
    return parsed


def code_block_calls(text: str, tool: str, *, max_calls: int = 8) -> list[ToolCall]:
    """Each fenced ```python block in `text` as a call of `tool` with that `code`.

    Small instruct models write code in fences far more readily than in <tool_call> JSON
    (CodeAct's observation), so an env with a python(code) tool may read them as calls.
    """
    blocks = [b for b in _CODE_BLOCK.findall(text) if b.strip()][:max_calls]
    return [ToolCall(id=f"call_{i}", name=tool, arguments={"code": b})
            for i, b in enumerate(blocks)]
