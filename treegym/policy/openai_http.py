"""`openai:URL#MODEL`: an OpenAI-compatible server (such as `vllm serve`) over httpx.

Contexts are ids on this side; the server's prefix cache does the reuse, as with the
in-process engine. Each context is its own `/v1/completions` request with a token-id
prompt, all in flight at once from an async client, because vLLM reports cached tokens
(`usage.prompt_tokens_details.cached_tokens`, with `--enable-prompt-tokens-details`) for
the last prompt of a multi-prompt request only.

The sampled ids come back as ids (`return_token_ids`, or `return_tokens_as_token_ids`
in the log-probs), never by re-tokenizing text. Those, `stop_token_ids` and
`ignore_eos` are vLLM extensions of the API; a server without them is refused with a
clear message rather than trained on ids it never sampled.

The async client runs on its own event-loop thread, so the sync methods work from
plain scripts and from inside someone else's event loop alike.

A trainer can update a vLLM server's weights in place (`load_weights`) through the
server's own routes: the weights are staged as safetensors in a directory the server
can read, `/collective_rpc` runs `reload_weights` on every worker, and
`/reset_prefix_cache` drops KV computed under the old weights. Those routes exist only
when the server runs with VLLM_SERVER_DEV_MODE=1; without them the error says so.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
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


class OpenAIOptions(BaseModel):
    """Options of `openai:URL#MODEL?tokenizer=PATH&timeout=30` (or keyword arguments)."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: str | None = Field(None, description="Local tokenizer dir; default: MODEL.")
    api_key: str | None = Field(None, description="Default: $OPENAI_API_KEY, if set.")
    timeout: float = Field(120.0, gt=0, description="Seconds per request.")
    max_retries: int = Field(4, ge=0, description="On connection errors and 5xx.")
    backoff: float = Field(0.5, ge=0, description="First retry delay; doubles each time.")
    concurrency: int = Field(64, ge=1, description="Requests in flight at once.")
    topk: int = Field(20, ge=1, le=20, description="Log-probs per step, for entropy.")
    weights_dir: str | None = Field(
        None, description="Where load_weights stages weights for the server to read; it must "
        "see the same path (default: a new temporary directory, for a server on this host)."
    )


def _base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class OpenAIPolicy(ServerCachedPolicy):
    backend = "openai"

    def __init__(self, url: str, model: str, **options: Any) -> None:
        opts = OpenAIOptions(**options)
        tokenizer_dir = opts.tokenizer or model
        if not Path(tokenizer_dir).expanduser().is_dir():
            raise PolicyError(
                f"openai:{url}#{model} needs a local tokenizer to render chats and decode ids; "
                "pass ?tokenizer=PATH (MODEL is used when it is a local directory)"
            )
        self.path = Path(tokenizer_dir).expanduser()  # a trainer's learner starts from it
        super().__init__(load_tokenizer(self.path))
        self.url, self.model, self.opts = _base_url(url), model, opts
        self._stage = WeightStage(opts.weights_dir)  # where load_weights leaves weights
        api_key = opts.api_key or os.environ.get("OPENAI_API_KEY")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client = self._run(self._open())
        try:
            self._check_model()
        except BaseException:
            self.close()
            raise

    # -- the event-loop thread -----------------------------------------------------------

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _open(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.opts.concurrency)
        return httpx.AsyncClient(
            base_url=self.url,
            timeout=self.opts.timeout,
            headers=self._headers,
            limits=limits,
        )

    async def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One call with retries on connection errors and 5xx; 4xx fails at once.

        `path` is under the API root (/v1), or an absolute URL for the server's own routes;
        errors name the URL actually requested."""
        url = path if "://" in path else f"{self.url}{path}"
        last: str = ""
        for attempt in range(self.opts.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.opts.backoff * 2 ** (attempt - 1))
            try:
                response = await self._client.request(method, path, json=body)
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.opts.timeout:g}s ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                last = f"cannot connect ({type(exc).__name__}: {exc})"
                continue
            if response.status_code >= 500:
                last = f"server error {response.status_code}: {response.text[:300]}"
                continue
            if response.status_code >= 400:
                raise PolicyError(
                    f"{method} {url} was refused with {response.status_code}: "
                    f"{response.text[:500]}"
                )
            return response.json()
        raise PolicyError(
            f"{method} {url} failed after {self.opts.max_retries + 1} tries: {last}. "
            "Is the server running and reachable (e.g. `vllm serve MODEL "
            "--enable-prompt-tokens-details`)?"
        )

    def _check_model(self) -> None:
        served = [m.get("id") for m in self._run(self._request("GET", "/models"))["data"]]
        if self.model not in served:
            raise PolicyError(f"{self.url} does not serve {self.model!r}; it serves {served}")

    # -- the protocol ----------------------------------------------------------------

    def _body(self, ids: list[int], params: SamplingParams, seed: int | None) -> dict:
        return {
            "model": self.model,
            "prompt": ids,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": params.stop,
            "stop_token_ids": params.stop_token_ids,
            "ignore_eos": True,  # EOS ids are already among stop_token_ids
            "seed": seed,
            "logprobs": self.opts.topk,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
        }

    def _parse(self, choice: dict) -> tuple[list[int], list[float], list[float]]:
        logprobs = choice.get("logprobs") or {}
        tokens = logprobs.get("tokens") or []
        ids = choice.get("token_ids")
        if ids is None and all(t.startswith("token_id:") for t in tokens):
            ids = [int(t.removeprefix("token_id:")) for t in tokens]
        if ids is None or len(tokens) != len(ids):
            raise PolicyError(
                f"{self.url} returned no sampled token ids with their log-probs; treegym "
                "needs a vLLM-compatible server (return_token_ids / return_tokens_as_token_ids)"
            )
        tops = logprobs.get("top_logprobs") or [{}] * len(ids)
        entropies = [
            topk_entropy(dict(enumerate(sorted(top.values(), reverse=True)[: self.opts.topk])))
            for top in tops
        ]
        return ids, list(logprobs["token_logprobs"]), entropies

    async def _generate_all(self, bodies: list[dict]) -> list[dict]:
        gate = asyncio.Semaphore(self.opts.concurrency)

        async def one(body: dict) -> dict:
            async with gate:
                return await self._request("POST", "/completions", body)

        return await asyncio.gather(*(one(b) for b in bodies))

    def _generate(self, ctxs: Sequence[Context], params: SamplingParams,
                  seeds: list[int | None]) -> list[Generation]:
        bodies = [self._body(c.ids, params, seed)
                  for c, seed in zip(ctxs, seeds, strict=True)]
        replies = self._run(self._generate_all(bodies))
        gens = []
        for ctx, reply in zip(ctxs, replies, strict=True):
            choice = reply["choices"][0]
            ids, logprobs, entropies = self._parse(choice)
            usage = reply.get("usage") or {}
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            self.ledger.add(prefilled=len(ctx) - cached, cached=cached, generated=len(ids))
            gens.append(
                Generation(
                    ids=ids,
                    logprobs=logprobs,
                    entropies=entropies,
                    finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                    text=self._decode(ids),
                )
            )
        return gens

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the server's weights in place with `weights` (HF checkpoint names) and
        drop its prefix cache; see the module docstring for the routes this takes."""
        stage = self._stage.write(weights)
        root = self.url.removesuffix("/v1")
        try:
            self._run(self._request("POST", f"{root}/collective_rpc", {
                "method": "reload_weights", "kwargs": {"weights_path": str(stage)},
            }))
        except PolicyError as exc:
            if " 404" not in str(exc) and " 405" not in str(exc):
                raise
            raise PolicyError(
                f"{exc}\n{root} has no weight-update route (/collective_rpc); a vLLM server "
                "has it when started with VLLM_SERVER_DEV_MODE=1"
            ) from None
        reset = self._run(self._request("POST", f"{root}/reset_prefix_cache"))
        if not reset.get("success", False):
            raise PolicyError(f"{root} refused to reset its prefix cache after a weight sync")

    def close(self) -> None:
        """Close the client and stop the loop thread. Safe to call more than once."""
        if self._loop.is_closed():
            return
        self._stage.close()
        client = getattr(self, "_client", None)
        if client is not None:
            self._run(client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
