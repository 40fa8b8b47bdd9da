"""`hf:PATH`: transformers on CPU or CUDA, with KV prefixes forked instead of recomputed.

Each context keeps its KV as a tuple of *spans*, each span per-layer (key, value)
tensors for a run of ids, together covering every id but the last one; that last id is
"pending" and is fed as the first input of the next forward. So `start` and `extend` run
the model over exactly the new ids, and `generate` needs no logits stored between calls.
Spans are never written after they are made, which lets `fork` share them outright, and
appending adds a span of its own: siblings keep sharing their common prefix in memory
for as long as they live, not only until their first step.

`generate` decodes many contexts of different lengths in one batch: their KV is
left-padded into one `DynamicCache` with an attention mask over the padding and explicit
position ids, finished rows are dropped with `batch_select_indices`, and each context
gets back its own unpadded KV.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from .base import BasePolicy, Context, Generation, PolicyError, SamplingParams
from .chat import load_tokenizer
from .gqa_attention import register as register_gqa_sdpa

Span = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: (key, value)
KV = tuple[Span, ...]  # in order; shared by forks, never written in place
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class HFOptions(BaseModel):
    """Options of `hf:PATH?dtype=bf16&device=cuda` (or keyword arguments)."""

    model_config = ConfigDict(extra="forbid")

    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str | None = None  # default: cuda when available, else cpu
    # treegym_sdpa: sdpa with grouped KV heads broadcast, not copied (gqa_attention.py)
    attn_implementation: Literal["treegym_sdpa", "sdpa", "eager"] = "treegym_sdpa"


class HFPolicy(BasePolicy):
    backend = "hf"

    def __init__(self, path: str | Path, **options: object) -> None:
        from transformers import AutoModelForCausalLM, DynamicCache

        opts = HFOptions(**options)
        register_gqa_sdpa()
        super().__init__(load_tokenizer(path))
        self.path = Path(path)  # a trainer copies its config and tokenizer next to new weights
        self.device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = DTYPES[opts.dtype]
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=self.dtype, attn_implementation=opts.attn_implementation
        ).to(self.device)
        self.model.eval()
        self._cache_cls = DynamicCache

    @torch.no_grad()
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy `weights` (HF checkpoint names, e.g. a learner's `named_parameters()`) into
        the model in place, as a trainer does to a rollout worker's copy after each step.

        Every parameter must be given, and all are checked before any is copied, so a
        partial or misnamed state dict fails here and leaves the model as it was, rather
        than rolling out with a mix of old and new weights. Contexts started before keep
        KV computed under the old weights: sync between collections, not during one.
        """
        own = self.model.state_dict(keep_vars=True)  # tied weights appear under each name
        given = list(weights)
        for name, tensor in given:  # check everything first: a refused load changes nothing
            if name not in own:
                raise PolicyError(f"load_weights: {name!r} is not a weight of this model")
            if own[name].shape != tensor.shape:
                raise PolicyError(f"load_weights: {name!r} has shape {tuple(tensor.shape)}, "
                                  f"the model's is {tuple(own[name].shape)}")
        missing = {name for name, _ in self.model.named_parameters()} - {n for n, _ in given}
        if missing:
            raise PolicyError(f"load_weights: {len(missing)} weights missing, e.g. "
                              f"{sorted(missing)[0]!r}; send the whole model")
        for name, tensor in given:
            own[name].copy_(tensor)

    # -- the model, one context at a time ----------------------------------------------

    def _cache(self, kv: KV):
        """A `DynamicCache` holding `kv` joined into one span (a copy for one forward)."""
        if not kv:
            return self._cache_cls()
        joined = kv[0] if len(kv) == 1 else tuple(
            (torch.cat([span[layer][0] for span in kv], dim=2),
             torch.cat([span[layer][1] for span in kv], dim=2))
            for layer in range(len(kv[0]))
        )
        return self._cache_cls(ddp_cache_data=joined)

    @torch.inference_mode()
    def _prefill(self, kv: KV, ids: list[int]) -> KV:
        """Run `ids` on top of `kv` and return it with their span added. Only `ids` are
        computed, and only their span is new memory."""
        if not ids:
            return kv
        past = _length(kv)
        cache = self._cache(kv)
        positions = torch.arange(past, past + len(ids), device=self.device)
        self.model(
            input_ids=torch.tensor([ids], device=self.device),
            past_key_values=cache,
            position_ids=positions[None],
            cache_position=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        return (*kv, tuple((layer.keys[:, :, past:].clone(), layer.values[:, :, past:].clone())
                           for layer in cache.layers))

    def start(self, prompt_ids: Sequence[int]) -> Context:
        ids = self._prompt_ids(prompt_ids)
        ctx = Context(ids, state=self._prefill((), ids[:-1]))
        self.ledger.add(prefilled=len(ids))
        return ctx

    def extend(self, ctx: Context, ids: Sequence[int]) -> None:
        """Append `ids`, computing KV for them only; the prefix comes from the cache."""
        self._live(ctx)
        ids = self._check_ids(ids, "extend ids")
        if not ids:
            return
        reused = len(ctx)
        ctx.state = self._prefill(ctx.state, [ctx.ids[-1], *ids[:-1]])
        self._append(ctx, ids)
        self.ledger.add(prefilled=len(ids), cached=reused)

    def fork(self, ctx: Context) -> Context:
        """A new context sharing `ctx`'s KV spans; neither ever writes them in place."""
        self._live(ctx)
        return Context(ctx.ids, state=ctx.state)

    def kv_bytes(self, ctxs: Sequence[Context]) -> int:
        """KV memory `ctxs` hold together, counting spans that forks share once."""
        held = {t.data_ptr(): t.numel() * t.element_size()
                for c in ctxs for span in c.state or () for layer in span for t in layer}
        return sum(held.values())

    # -- batched decoding ----------------------------------------------------------------

    def _stack(self, ctxs: Sequence[Context]) -> tuple[object, torch.Tensor, list[int]]:
        """Left-pad every context's KV into one cache; return it, its mask and the pads."""
        lengths = [len(c) - 1 for c in ctxs]
        width = max(lengths)
        pads = [width - n for n in lengths]
        mask = torch.tensor(
            [[0] * p + [1] * n for p, n in zip(pads, lengths, strict=True)], device=self.device
        )
        if width == 0:
            return self._cache(()), mask, pads
        ref = next(c.state for c in ctxs if c.state)[0]
        layers = []
        for layer, (k_ref, v_ref) in enumerate(ref):
            k = k_ref.new_zeros(len(ctxs), k_ref.shape[1], width, k_ref.shape[3])
            v = v_ref.new_zeros(len(ctxs), v_ref.shape[1], width, v_ref.shape[3])
            for row, (ctx, pad) in enumerate(zip(ctxs, pads, strict=True)):
                at = pad
                for span in ctx.state:
                    n = span[layer][0].shape[2]
                    k[row, :, at : at + n] = span[layer][0][0]
                    v[row, :, at : at + n] = span[layer][1][0]
                    at += n
            layers.append((k, v))
        return self._cache((tuple(layers),)), mask, pads

    def _sample(
        self, logits: torch.Tensor, params: SamplingParams, gens: list[torch.Generator | None]
    ) -> torch.Tensor:
        if params.temperature == 0:
            return logits.argmax(-1)
        probs = F.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            outside = sorted_p.cumsum(-1) - sorted_p > params.top_p  # keeps the top token
            sorted_p = sorted_p.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        # a generator per row: a context's draws must not depend on its batch neighbours
        return torch.cat([torch.multinomial(probs[row], 1, generator=gen)
                          for row, gen in enumerate(gens)])

    def _stopped(self, ids: list[int], params: SamplingParams, window: int) -> bool:
        if ids[-1] in params.stop_token_ids:
            return True
        if params.stop:
            tail = self.tokenizer.decode(ids[-window:], skip_special_tokens=False)
            return any(s in tail for s in params.stop)
        return False

    @torch.inference_mode()
    def _generate(self, ctxs: Sequence[Context], params: SamplingParams,
                  seeds: list[int | None]) -> list[Generation]:
        window = 4 * max((len(s) for s in params.stop), default=0) + 4  # >= 1 byte a token
        gens = [
            None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
            for seed in seeds
        ]

        cache, mask, pads = self._stack(ctxs)
        width = mask.shape[1]
        live = list(range(len(ctxs)))  # batch row -> index into ctxs
        tokens = torch.tensor([c._ids[-1] for c in ctxs], device=self.device)
        positions = torch.tensor([len(c) - 1 for c in ctxs], device=self.device)
        out_ids: list[list[int]] = [[] for _ in ctxs]
        out_lp: list[list[float]] = [[] for _ in ctxs]
        out_h: list[list[float]] = [[] for _ in ctxs]
        reasons: list[str] = ["length"] * len(ctxs)

        for step in range(params.max_tokens):
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
            logits = (
                self.model(
                    input_ids=tokens[:, None],
                    attention_mask=mask,
                    position_ids=positions[:, None],
                    past_key_values=cache,
                    cache_position=torch.tensor([width + step], device=self.device),
                    use_cache=True,
                )
                .logits[:, -1]
                .float()
            )
            logp = F.log_softmax(logits, dim=-1)
            entropy = -(logp.exp() * logp).sum(-1)
            tokens = self._sample(logits, params, gens)
            chosen = logp.gather(-1, tokens[:, None]).squeeze(-1)

            keep = []
            for row, i in enumerate(live):
                out_ids[i].append(int(tokens[row]))
                out_lp[i].append(float(chosen[row]))
                out_h[i].append(float(entropy[row]))
                done = self._stopped(out_ids[i], params, window)
                if done or step == params.max_tokens - 1:
                    reasons[i] = "stop" if done else "length"
                    self._finish(ctxs[i], cache, row, pads[i])
                else:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(live):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, tokens, positions = mask[index], tokens[index], positions[index]
                gens = [gens[r] for r in keep]
                live = [live[r] for r in keep]
            positions = positions + 1

        self.ledger.add(generated=sum(len(ids) for ids in out_ids))
        return [
            Generation(ids=ids, logprobs=lp, entropies=h, finish_reason=r, text=self._decode(ids))
            for ids, lp, h, r in zip(out_ids, out_lp, out_h, reasons, strict=True)
        ]

    def _finish(self, ctx: Context, cache: object, row: int, pad: int) -> None:
        """Add to `ctx`'s state the span this call computed: its batch row past what it had
        (`generate` appends the ids once this call returns)."""
        start = pad + len(ctx) - 1
        ctx.state = (*ctx.state, tuple(
            (layer.keys[row : row + 1, :, start:].clone(),
             layer.values[row : row + 1, :, start:].clone())
            for layer in cache.layers
        ))


def _length(kv: KV) -> int:
    """How many ids `kv` covers."""
    return sum(span[0][0].shape[2] for span in kv)
