"""The Hermes/Qwen action format: any number of tool calls and one final answer."""

from treegym import parse_action
from treegym.parsing import ANSWER_FORMAT, PLACEHOLDER_ANSWERS


def test_several_calls_and_an_answer_in_order() -> None:
    text = (
        'Let me look.<tool_call>{"name": "look", "arguments": {}}</tool_call>\n'
        '<tool_call>\n{"name": "move", "arguments": {"direction": "east"}}\n</tool_call>'
        "<answer> east </answer>"
    )
    parsed = parse_action(text)
    assert [(c.id, c.name, c.arguments) for c in parsed.calls] == [
        ("call_0", "look", {}),
        ("call_1", "move", {"direction": "east"}),
    ]
    assert parsed.answer == "east" and parsed.errors == []


def test_arguments_may_be_a_json_string_or_missing() -> None:
    parsed = parse_action(
        '<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call>'
        '<tool_call>{"name": "b"}</tool_call>'
    )
    assert [c.arguments for c in parsed.calls] == [{"x": 1}, {}]


def test_a_bad_call_keeps_its_id_and_the_next_call_still_parses() -> None:
    parsed = parse_action('<tool_call>{nope}</tool_call><tool_call>{"name": "b"}</tool_call>')
    assert parsed.errors[0].startswith("tool call call_0 is not valid JSON")
    assert [c.id for c in parsed.calls] == ["call_1"]


def test_plain_text_has_nothing() -> None:
    assert parse_action("just thinking") == parse_action("")
    assert parse_action("just thinking").calls == []


def test_json_the_decoder_refuses_is_a_named_error_not_an_exception() -> None:
    deep = "<tool_call>" + "[" * 7000 + "]" * 7000 + "</tool_call>"
    long_number = '<tool_call>{"name": "a", "arguments": {"x": ' + "9" * 5000 + "}}</tool_call>"
    assert "nested too deeply" in parse_action(deep).errors[0]
    assert "number too long" in parse_action(long_number).errors[0]


def test_a_placeholder_answer_is_a_format_error_not_an_answer() -> None:
    for action in ["<answer>...</answer>", "<answer> … </answer>", f"finish with {ANSWER_FORMAT}"]:
        parsed = parse_action(action)
        assert parsed.answer is None, action
        [error] = parsed.errors
        assert "is the placeholder of a format hint, not an answer" in error
    assert PLACEHOLDER_ANSWERS >= {"...", "…"}
    assert parse_action("<answer>... 42</answer>").answer == "... 42"  # more than a placeholder
    assert parse_action("<answer>.</answer>").answer == "."


def test_format_hints_hold_no_literal_answer_or_call() -> None:
    assert "..." not in ANSWER_FORMAT
    bad = parse_action("<tool_call>[1]</tool_call>").errors[0]  # its hint says how, in words
    hint = bad.split("Write ", 1)[1]
    assert parse_action(hint).calls == [] and "..." not in hint
