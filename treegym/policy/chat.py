"""Chat rendering on token ids: the prompt once, then each turn's ids appended.

Re-tokenizing a whole conversation after every turn would change the ids a policy
sampled (BPE merges differ, templates rewrite old turns), and a learner would then train
on tokens the model never produced. So the prompt is rendered once with the tokenizer's
chat template, and every later turn contributes only the ids that follow the sampled
ones: the rest of the assistant turn's close, the tool-result turn, and the next
assistant header. Those pieces are cut out of the template itself, so any Hermes/Qwen-
or Llama-style template works unchanged.

Some instruct templates drop `tools` (SmolLM2's ChatML template among them), which would
leave the model with no idea that tools exist or how to call them. For those, treegym
renders the tools itself, Hermes-style: the schemas and the `<tool_call>` / `<answer>`
format go into the system turn, and tool results go back as `<tool_response>` blocks in
a user turn, since such templates know no `tool` role either. It warns once per
tokenizer that it does so.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import PolicyError

_SENTINEL = "\x00TREEGYM-SENTINEL\x00"
_PROBE_TOOL = "treegym_probe_tool_5e1d"  # a name no template writes unless it renders tools
_warned: set[str] = set()


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """The system text that teaches a model treegym's tools and formats, for templates
    that render no tools of their own (Hermes's layout: schemas inside <tools>)."""
    schemas = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    first = tools[0]["function"]
    example = json.dumps({"name": first["name"], "arguments": {
        arg: "..." for arg in first.get("parameters", {}).get("properties", {})}})
    return (
        "You can call tools. Their JSON schemas are between <tools> and </tools>:\n"
        f"<tools>\n{schemas}\n</tools>\n\n"
        "To call a tool, write one JSON object with its name and arguments between "
        f"<tool_call> and </tool_call>, for example:\n<tool_call>\n{example}\n</tool_call>\n"
        "Each result comes back between <tool_response> and </tool_response>. "
        "When you know the final answer, write only the answer itself between <answer> "
        "and </answer>."
    )


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer at `path`, checked to have a chat template."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise PolicyError(
            f"no model directory at {path}; give a local checkpoint in Hugging Face layout "
            "(config.json, weights, tokenizer files), or run `treegym model init tiny PATH`"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise PolicyError(f"cannot load a tokenizer from {path}: {exc}") from None
    if not tokenizer.chat_template:
        raise PolicyError(
            f"the tokenizer at {path} has no chat template, so messages and tools can't be "
            "rendered; use an instruct/chat checkpoint or add `chat_template` to its "
            "tokenizer_config.json (or a chat_template.jinja file)"
        )
    return tokenizer


class ChatRenderer:
    """Turns messages and tool schemas into ids, and later turns into ids to append."""

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise PolicyError("this tokenizer has no chat template; see load_tokenizer")
        self.tokenizer = tokenizer
        self.renders_tools = self._renders_tools()
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        if not self.renders_tools and name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"the chat template of {name} ignores `tools`; treegym writes them into the "
                "system turn (Hermes-style) and sends tool results as <tool_response> blocks "
                "in user turns", stacklevel=2)
        self._close, self._end_token = self._assistant_close()

    def _renders_tools(self) -> bool:
        probe = [{"type": "function", "function": {
            "name": _PROBE_TOOL, "description": "probe",
            "parameters": {"type": "object", "properties": {}}}}]
        return _PROBE_TOOL in self._text([{"role": "user", "content": "u"}], probe, gen=True)

    def with_tools(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> tuple[list[dict[str, Any]], Sequence[dict[str, Any]] | None]:
        """`messages` and `tools` as this template gets them: unchanged where it renders
        tools, else with the tools written into the system turn and no `tools` left."""
        messages = list(messages)
        if not tools or self.renders_tools:
            return messages, tools
        block = tools_system_prompt(tools)
        if messages and messages[0]["role"] == "system":
            first = {**messages[0], "content": f"{messages[0]['content']}\n\n{block}"}
            return [first, *messages[1:]], None
        return [{"role": "system", "content": block}, *messages], None

    def _text(self, messages: list[dict[str, Any]], tools: Any = None, gen: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=gen
        )

    def encode(self, text: str) -> list[int]:
        """Ids of template text; special tokens in it are recognised, none are added."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prompt_ids(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
    ) -> list[int]:
        """The whole prompt up to and including the first assistant header."""
        return self.encode(self._text(*self.with_tools(messages, tools), gen=True))

    def _assistant_close(self) -> tuple[str, str | None]:
        """What the template writes after an assistant's content, and its end token."""
        base = [{"role": "user", "content": "u"}, {"role": "assistant", "content": _SENTINEL}]
        text = self._text(base)
        close = text[text.rindex(_SENTINEL) + len(_SENTINEL) :]
        specials = sorted(self.tokenizer.all_special_tokens, key=len, reverse=True)
        added = [t.content for t in self.tokenizer.added_tokens_decoder.values()]
        end = next((t for t in [*specials, *added] if t and close.startswith(t)), None)
        return close, end

    def turn_ids(
        self,
        generated_ids: Sequence[int],
        observations: Sequence[str],
        *,
        role: str = "tool",
    ) -> list[int]:
        """Ids to append after a sampled assistant turn: its close, the results, a header.

        If the sampled ids already end with the template's end-of-turn token (the usual
        EOS stop), that token is not added again. `observations` become one message each
        with `role` ("tool" renders as tool results; "user" as plain user turns). Where
        the template renders no tools, tool results are one user turn of
        `<tool_response>` blocks.
        """
        if role == "tool" and not self.renders_tools:
            observations = ["\n".join(f"<tool_response>\n{obs}\n</tool_response>"
                                       for obs in observations)]
            role = "user"
        close = self._close
        if self._end_token is not None and generated_ids:
            last = self.tokenizer.convert_ids_to_tokens(int(generated_ids[-1]))
            if last == self._end_token:
                close = close[len(self._end_token) :]
        before = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
        after = before + [{"role": role, "content": obs} for obs in observations]
        head, full = self._text(before), self._text(after, gen=True)
        if not full.startswith(head):
            raise PolicyError(
                "this chat template rewrites earlier turns when a new one is added, so turns "
                "can't be appended as ids; use a template that renders turns independently"
            )
        return self.encode(close + full[len(head) :])
