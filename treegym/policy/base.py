"""What every policy backend shares: the protocol, its records, and the ledger.

A policy works on token ids, never on re-tokenized text: a Context holds exactly the ids
its KV prefix covers, and `generate` appends the ids it sampled, so the ids a learner
trains on are the ids the model produced.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..errors import TreegymError


class PolicyError(TreegymError, RuntimeError):
    """A policy that can't be built or used: bad spec, missing model, dead server, misuse."""


class SamplingParams(BaseModel):
    """How to sample. `temperature == 0` is greedy.

    `seed` seeds the whole call; contexts in one call still draw different samples.
    """

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=list, description="Stop after any of these texts.")
    stop_token_ids: list[int] = Field(
        default_factory=list, description="Stop after any of these ids (EOS ids are added)."
    )
    seed: int | None = None


class Generation(BaseModel):
    """One context's new tokens from one `generate` call.

    `logprobs` are of the raw model distribution (temperature 1, no top-p), the quantity a
    learner recomputes. `entropies` are per step, in nats: exact for `hf`, estimated from
    the top-k log-probs for `vllm` and `openai`. The ids include the stop token or the
    token that completed a stop string; `text` is their decoding without special tokens.
    """

    ids: list[int]
    logprobs: list[float]
    entropies: list[float]
    finish_reason: Literal["stop", "length"]
    text: str


class Ledger(BaseModel):
    """Token counts since the policy was made.

    `prefilled`: prompt-side tokens the model computed KV for. `cached`: prompt-side tokens
    whose KV was reused instead. `generated`: tokens sampled. A branch that reuses its
    prefix shows up as a small `prefilled` and a large `cached`.
    """

    prefilled: int = 0
    cached: int = 0
    generated: int = 0

    def add(self, *, prefilled: int = 0, cached: int = 0, generated: int = 0) -> None:
        self.prefilled += prefilled
        self.cached += cached
        self.generated += generated


class Context:
    """A handle on a KV prefix: the ids it covers plus whatever the backend keeps for it.

    `state` is backend-owned (cached tensors for `hf`; nothing for servers that keep
    their own prefix cache). A released context refuses every further use.
    """

    __slots__ = ("_ids", "state", "released")

    def __init__(self, ids: Iterable[int], state: Any = None) -> None:
        self._ids = [int(i) for i in ids]
        self.state = state
        self.released = False

    @property
    def ids(self) -> list[int]:
        """A copy of the covered ids; change a context only through its policy."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        status = "released" if self.released else f"{len(self._ids)} tokens"
        return f"Context({status})"


@runtime_checkable
class Policy(Protocol):
    """Makes tokens for many contexts at once, and forks contexts without recomputing."""

    backend: str
    ledger: Ledger
    tokenizer: Any

    def start(self, prompt_ids: Sequence[int]) -> Context: ...

    def extend(self, ctx: Context, ids: Sequence[int]) -> None: ...

    def fork(self, ctx: Context) -> Context: ...

    def generate(
        self,
        ctxs: Sequence[Context],
        params: SamplingParams | None = None,
        stop: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Generation]: ...

    def release(self, ctx: Context) -> None: ...

    def close(self) -> None: ...


class BasePolicy(ABC):
    """The contract every backend keeps, written once: `generate` checks the batch (live
    contexts, none twice, none empty), resolves the sampling parameters (stops and EOS
    merged in) and the per-context seeds, then calls the backend's `_generate`. Also the
    ledger and the id checks that `start` and `extend` share."""

    backend = "base"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ledger = Ledger()
        self.eos_ids = _eos_ids(tokenizer)

    def generate(
        self,
        ctxs: Sequence[Context],
        params: SamplingParams | None = None,
        stop: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Generation]:
        """Decode all `ctxs` together; each gets its new ids appended (and its KV grown)."""
        check_batch(ctxs, seeds)
        if not ctxs:
            return []
        params = self._resolve(params, stop)
        gens = self._generate(ctxs, params, self._seeds(params, len(ctxs), seeds))
        for ctx, gen in zip(ctxs, gens, strict=True):
            self._append(ctx, gen.ids)
        return gens

    @abstractmethod
    def _generate(self, ctxs: Sequence[Context], params: SamplingParams,
                  seeds: list[int | None]) -> list[Generation]:
        """The backend's decoding of a checked, non-empty batch with resolved params.

        It grows each context's backend state but not its ids: `generate` appends the
        generated ids afterwards, so while it runs `len(ctx)` is the prefix it started from.
        """

    @staticmethod
    def _append(ctx: Context, ids: Sequence[int]) -> None:
        """The one place a context's ids grow; callers have checked them."""
        ctx._ids.extend(ids)

    def _prompt_ids(self, prompt_ids: Sequence[int]) -> list[int]:
        """`start`'s ids, checked: a context must hold at least one id to decode from."""
        ids = self._check_ids(prompt_ids, "prompt_ids")
        if not ids:
            raise PolicyError("start() needs at least one prompt id")
        return ids

    def _live(self, ctx: Context) -> Context:
        return live(ctx)

    def _check_ids(self, ids: Sequence[int], what: str) -> list[int]:
        ids = [int(i) for i in ids]
        vocab = len(self.tokenizer)
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise PolicyError(f"{what} has ids outside the vocabulary [0, {vocab}): {bad[:5]}")
        return ids

    def _resolve(self, params: SamplingParams | None, stop: Sequence[str] | None) -> SamplingParams:
        """The call's params with extra stop strings and the tokenizer's EOS ids merged in."""
        params = params or SamplingParams()
        return params.model_copy(
            update={
                "stop": list(dict.fromkeys([*params.stop, *(stop or [])])),
                "stop_token_ids": list(dict.fromkeys([*params.stop_token_ids, *self.eos_ids])),
            }
        )

    @staticmethod
    def _seeds(params: SamplingParams, n: int, seeds: Sequence[int] | None) -> list[int | None]:
        """One seed per context. Explicit `seeds` make each context's draws independent of
        which others share its batch; otherwise context i gets `params.seed + i`."""
        if seeds is not None:
            return [int(s) for s in seeds]
        return [None if params.seed is None else params.seed + i for i in range(n)]

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def release(self, ctx: Context) -> None:
        """Drop the context's cached state. Releasing twice is allowed."""
        ctx.state = None
        ctx.released = True

    def close(self) -> None:  # noqa: B027 - a backend without resources frees nothing
        """Free the backend. Safe to call more than once."""


class ServerCachedPolicy(BasePolicy):
    """Backends whose KV lives in an engine's prefix cache: a context is just its ids.

    `extend` and `fork` cost nothing here; the engine prefills new ids on the next
    `generate` and finds shared prefixes by hashing, so its cached-token counts feed the
    ledger.
    """

    def start(self, prompt_ids: Sequence[int]) -> Context:
        return Context(self._prompt_ids(prompt_ids))

    def extend(self, ctx: Context, ids: Sequence[int]) -> None:
        """Append ids; the engine prefills them on the next `generate`."""
        self._append(self._live(ctx), self._check_ids(ids, "extend ids"))

    def fork(self, ctx: Context) -> Context:
        """A copy of the ids; the KV is shared by the engine's prefix cache."""
        return Context(self._live(ctx)._ids)


def live(ctx: Context) -> Context:
    """`ctx`, unless it was released."""
    if ctx.released:
        raise PolicyError(
            "this context was released; fork a live context before releasing it "
            "if you need to continue from it"
        )
    return ctx


def check_batch(ctxs: Sequence[Context], seeds: Sequence[int] | None) -> None:
    """Refuse a `generate` batch with a released or empty context, with one context twice
    (its new ids would be appended twice, and its ids would no longer match its KV), or
    with a seed list of the wrong length. Every backend's `generate` starts here."""
    for ctx in ctxs:
        if not len(live(ctx)):
            raise PolicyError("generate() got an empty context; start() it from a prompt")
    if len({id(c) for c in ctxs}) != len(ctxs):
        raise PolicyError("generate() got the same context twice; fork it first")
    if seeds is not None and len(seeds) != len(ctxs):
        raise PolicyError(f"generate() got {len(seeds)} seeds for {len(ctxs)} contexts")


def _eos_ids(tokenizer: Any) -> list[int]:
    """End-of-turn ids: the tokenizer's EOS plus `<|im_end|>`/`<|endoftext|>` when present."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>") if t in vocab]
    return list(dict.fromkeys(ids))


def topk_entropy(top: Mapping[Any, float]) -> float:
    """Entropy (nats) estimated from top-k log-probs, the way ARPO estimates it.

    The mass outside the top k is ignored, so this is a lower bound on the true entropy.
    """
    return -sum(math.exp(lp) * lp for lp in top.values() if lp > -math.inf)
