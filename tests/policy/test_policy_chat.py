"""Chat rendering: turns appended as ids equal a whole-conversation render."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import treegym
from treegym.policy import ChatRenderer, PolicyError, SamplingParams, load_tokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "move",
            "description": "Move one step.",
            "parameters": {
                "type": "object",
                "properties": {"direction": {"type": "string"}},
                "required": ["direction"],
            },
        },
    }
]
CALL = '<tool_call>\n{"name": "move", "arguments": {"direction": "north"}}\n</tool_call>'


@pytest.fixture(scope="module")
def chat(hf) -> ChatRenderer:
    return ChatRenderer(hf.tokenizer)


def whole(chat: ChatRenderer, messages: list[dict]) -> list[int]:
    text = chat.tokenizer.apply_chat_template(
        messages, tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    return chat.encode(text)


def test_turns_appended_equal_whole_render(chat: ChatRenderer) -> None:
    end = chat.tokenizer.convert_tokens_to_ids("<|im_end|>")
    messages = [
        {"role": "system", "content": "Find the exit."},
        {"role": "user", "content": "You are at (0, 0)."},
    ]
    ids = chat.prompt_ids(messages, TOOLS)
    assert ids == whole(chat, messages)
    for action, observations in [
        (CALL, ["Moved north.", "You see a wall."]),  # two results group into one turn
        ("<answer>done</answer>", ["Episode over."]),
    ]:
        sampled = chat.encode(action) + [end]  # as if the model stopped on <|im_end|>
        ids += sampled + chat.turn_ids(sampled, observations)
        messages += [{"role": "assistant", "content": action}]
        messages += [{"role": "tool", "content": obs} for obs in observations]
        assert ids == whole(chat, messages)


def test_turn_cut_by_length_gets_its_end_token(chat: ChatRenderer) -> None:
    messages = [{"role": "user", "content": "Go."}]
    sampled = chat.encode(CALL)  # no <|im_end|>: max_tokens or a stop string ended it
    ids = chat.prompt_ids(messages, TOOLS) + sampled + chat.turn_ids(sampled, ["ok"], role="user")
    messages += [{"role": "assistant", "content": CALL}, {"role": "user", "content": "ok"}]
    assert ids == whole(chat, messages)


def test_env_episode_keeps_the_sampled_ids(hf, chat: ChatRenderer) -> None:
    env = treegym.make("treegym/Maze-v0")
    obs, info = env.reset(seed=0)
    prompt = chat.prompt_ids([{"role": "user", "content": obs}], info["tools"])
    text = hf.tokenizer.decode(prompt)
    assert all(t["function"]["name"] in text for t in info["tools"])
    assert text.endswith("<|im_start|>assistant\n")
    ctx = hf.start(prompt)
    [gen] = hf.generate([ctx], SamplingParams(temperature=1.0, max_tokens=16, seed=0))
    obs, *_ = env.step(gen.text)
    turn = chat.turn_ids(gen.ids, [obs])
    hf.extend(ctx, turn)
    assert ctx.ids == prompt + gen.ids + turn
    assert hf.tokenizer.decode(ctx.ids).endswith(
        "</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    env.close()


def test_tokenizer_without_chat_template(tiny: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(tiny, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = bare / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"chat_template"', '"unused_template"'))
    with pytest.raises(PolicyError, match="no chat template"):
        load_tokenizer(bare)
    with pytest.raises(PolicyError, match="no chat template"):
        treegym.policy.make_policy(f"hf:{bare}")
