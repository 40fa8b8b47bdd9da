"""What a person types becomes the Hermes text a model would write, or a clear error."""

from __future__ import annotations

import json

import pytest

import treegym
from treegym.parsing import parse_action
from treegym.play import InputError, to_action


@pytest.fixture(scope="module")
def schemas() -> dict[str, list[dict]]:
    out = {}
    for env_id in ("treegym/Maze-v0", "treegym/BugFix-v0", "treegym/Counter-v0"):
        env = treegym.make(env_id)
        out[env_id] = env.tools.schemas
        env.close()
    return out


def call_of(action: str) -> tuple[str, dict]:
    parsed = parse_action(action)
    assert not parsed.errors and len(parsed.calls) == 1, action
    return parsed.calls[0].name, parsed.calls[0].arguments


@pytest.mark.parametrize(("typed", "name", "args"), [
    ("move north", "move", {"direction": "north"}),
    ("move direction=west", "move", {"direction": "west"}),
    ("move()", "move", {}),
    ("look", "look", {}),
    ("look()", "look", {}),
    ('{"name": "move", "arguments": {"direction": "east"}}', "move", {"direction": "east"}),
    ('move {"direction": "south"}', "move", {"direction": "south"}),
])
def test_maze_short_forms(schemas: dict, typed: str, name: str, args: dict) -> None:
    assert call_of(to_action(typed, schemas["treegym/Maze-v0"])) == (name, args)


def test_colon_form_keeps_code_verbatim_and_typed_args_parse(schemas: dict) -> None:
    code = 'x = {"a": 1}; print(x["a"] , end=":")'
    assert call_of(to_action(f"bash: {code}", schemas["treegym/BugFix-v0"])) == (
        "bash", {"cmd": code})
    assert call_of(to_action("edit lib.py 'a + b' 'a - b'", schemas["treegym/BugFix-v0"])) == (
        "edit", {"path": "lib.py", "old": "a + b", "new": "a - b"})
    # an int parameter reads its value as JSON; the only required one takes the rest
    assert call_of(to_action("add 5", schemas["treegym/Counter-v0"])) == ("add", {"amount": 5})
    assert call_of(to_action("add amount=3 note=hi", schemas["treegym/Counter-v0"])) == (
        "add", {"amount": 3, "note": "hi"})


def test_answers_and_full_forms_pass_through(schemas: dict) -> None:
    maze = schemas["treegym/Maze-v0"]
    assert to_action("answer 42", maze) == "<answer>42</answer>"
    full = '<tool_call>{"name": "look", "arguments": {}}</tool_call>'
    assert to_action(full, maze) == full
    assert to_action("<answer>x</answer>", maze) == "<answer>x</answer>"
    assert json.loads(to_action("look", maze)[len("<tool_call>"):-len("</tool_call>")]) == {
        "name": "look", "arguments": {}}


@pytest.mark.parametrize(("typed", "says"), [
    ("fly north", "unknown tool 'fly'"),
    ("", "empty input"),
    ("{not json", "not valid JSON"),
    ('{"arguments": {}}', 'needs "name"'),
    ("edit a b", "edit takes path, old, new"),
    ("edit: x", "one-parameter tools"),
])
def test_bad_input_names_the_problem(schemas: dict, typed: str, says: str) -> None:
    with pytest.raises(InputError, match=says.replace("(", r"\(")):
        to_action(typed, schemas["treegym/BugFix-v0"] + schemas["treegym/Maze-v0"])
