"""What a person types at the `play` prompt, turned into the action text a model would write.

A person should not have to type `<tool_call>{"name": "move", ...}</tool_call>` to move
north, yet the env must see exactly the Hermes text a model would send, so that a played
turn and a sampled turn are the same kind of record. Full forms pass through untouched.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from ..errors import TreegymError
from ..parsing import answer_text, tool_call_text


class InputError(TreegymError, ValueError):
    """Input that is neither an action nor a command; the message says what would work."""


def _parameters(schema: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    params = schema["function"]["parameters"]
    return params.get("properties", {}), list(params.get("required", []))


def _value(text: str, prop: dict[str, Any]) -> Any:
    """A string parameter takes the text as written; any other type reads it as JSON."""
    if prop.get("type") == "string" or (
        "enum" in prop and all(isinstance(v, str) for v in prop["enum"])
    ):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # the env's validation then names the expected type


def _arguments(name: str, rest: str, schema: dict[str, Any]) -> dict[str, Any]:
    props, required = _parameters(schema)
    rest = rest.strip()
    if not rest:
        return {}
    if rest.startswith("{"):
        try:
            args = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: arguments are not valid JSON ({exc.msg})") from None
        if not isinstance(args, dict):
            raise InputError(f"{name}: arguments must be a JSON object")
        return args
    try:
        words = shlex.split(rest)
    except ValueError:
        words = []
    if words and all("=" in w and w.split("=", 1)[0] in props for w in words):
        return {k: _value(v, props[k]) for k, v in (w.split("=", 1) for w in words)}
    # one parameter to fill (the only one, or the only required one): the rest is its value
    single = list(props) if len(props) == 1 else required if len(required) == 1 else []
    if len(single) == 1:
        return {single[0]: _value(rest, props[single[0]])}
    if len(words) == len(props):
        return {k: _value(w, props[k]) for k, w in zip(props, words, strict=True)}
    raise InputError(
        f"{name} takes {', '.join(props)}: write them as key=value, as JSON, or as "
        f"{len(props)} quoted words in that order"
    )


def to_action(text: str, schemas: list[dict[str, Any]]) -> str:
    """The action text for one line of input; raises `InputError` if it names no tool.

    Accepted: a full `<tool_call>` / `<answer>` text, a bare JSON call object,
    `answer TEXT`, `TOOL: TEXT` (the text fills the tool's one parameter verbatim, for
    code), and `TOOL ARGS` with ARGS as key=value words, JSON, or positional words.
    """
    text = text.strip()
    if not text:
        raise InputError("empty input; type an action, or /help")
    if "<tool_call>" in text or "<answer>" in text:
        return text
    by_name = {s["function"]["name"]: s for s in schemas}
    if text.startswith("{"):
        try:
            call = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg} at char {exc.pos})") from None
        if not isinstance(call, dict) or "name" not in call:
            raise InputError('a JSON call needs "name" (and "arguments")')
        return tool_call_text(call["name"], call.get("arguments", {}))
    head, colon, body = text.partition(":")
    if colon and head.strip() in by_name:  # `python: print(1)`: the rest is verbatim
        name = head.strip()
        props, required = _parameters(by_name[name])
        target = list(props) if len(props) == 1 else required
        if len(target) != 1:
            raise InputError(f"'{name}:' works for one-parameter tools; write {name} key=value")
        return tool_call_text(name, {target[0]: _value(body.strip(), props[target[0]])})
    word, _, rest = text.partition(" ")
    if word.endswith("()"):
        word = word[:-2]
    if word.lower() == "answer":
        return answer_text(rest.strip())
    if word in by_name:
        return tool_call_text(word, _arguments(word, rest, by_name[word]))
    raise InputError(
        f"unknown tool '{word}'; tools: {', '.join(by_name) or '(none)'}. "
        "Or: answer TEXT, a <tool_call>, or /help"
    )
