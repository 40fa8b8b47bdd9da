"""Chat rendering on token ids: the prompt once, then each turn's ids appended.

Re-tokenizing a whole conversation after every turn would change the ids a policy
sampled (BPE merges differ, templates rewrite old turns), and a learner would then train
on tokens the model never produced. So the prompt is rendered once with the tokenizer's
chat template, and every later turn contributes only the ids that follow the sampled
ones: the rest of the assistant turn's close, the tool-result turn, and the next
assistant header. Those pieces are cut out of the template itself, so any Hermes/Qwen-
or Llama-style template works unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import PolicyError

_SENTINEL = "\x00TREEGYM-SENTINEL\x00"


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
        self._close, self._end_token = self._assistant_close()

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
        return self.encode(self._text(list(messages), tools, gen=True))

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
        with `role` ("tool" renders as tool results; "user" as plain user turns).
        """
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
