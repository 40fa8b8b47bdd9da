"""`MenuPolicy`: samples whole actions from a fixed menu of texts.

It keeps the full Policy contract (token ids, contexts, forks, a ledger) without a
neural network, for the places where an untrained model is useless: testing that tool
calls are counted and replayed exactly, demos that must show real tool use, and scripted
baselines. Its log-probs are exact for what it does: a uniform choice over the menu,
charged to the first token of the action.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import BasePolicy, Context, Generation, PolicyError, SamplingParams


class MenuPolicy(BasePolicy):
    backend = "menu"

    def __init__(self, tokenizer: Any, actions: Sequence[str], *, seed: int = 0) -> None:
        super().__init__(tokenizer)
        if not actions:
            raise PolicyError("MenuPolicy needs at least one action text")
        end = self.eos_ids[:1]
        self.menu = [tokenizer.encode(text, add_special_tokens=False) + end for text in actions]
        self.texts = list(actions)
        self._rng = np.random.default_rng(seed)

    def start(self, prompt_ids: Sequence[int]) -> Context:
        ids = self._prompt_ids(prompt_ids)
        self.ledger.add(prefilled=len(ids))
        return Context(ids)

    def extend(self, ctx: Context, ids: Sequence[int]) -> None:
        ids = self._check_ids(ids, "extend ids")
        self._append(self._live(ctx), ids)
        self.ledger.add(prefilled=len(ids))

    def fork(self, ctx: Context) -> Context:
        self.ledger.add(cached=len(self._live(ctx)))
        return Context(ctx.ids)

    def _generate(self, ctxs: Sequence[Context], params: SamplingParams,
                  seeds: list[int | None]) -> list[Generation]:
        choice_logprob = -math.log(len(self.menu))
        out = []
        for seed in seeds:  # a pick ignores the context: the menu is the whole policy
            rng = self._rng if seed is None else np.random.default_rng(seed)
            pick = int(rng.integers(len(self.menu)))
            ids = self.menu[pick][: params.max_tokens]
            self.ledger.add(generated=len(ids))
            finish = "stop" if len(ids) == len(self.menu[pick]) else "length"
            out.append(Generation(
                ids=list(ids),
                logprobs=[choice_logprob] + [0.0] * (len(ids) - 1),
                entropies=[-choice_logprob] + [0.0] * (len(ids) - 1),
                finish_reason=finish,
                text=self._decode(ids),
            ))
        return out
