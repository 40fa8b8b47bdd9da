"""`treegym bench policy`: what forking a KV prefix saves over re-prefilling it.

A tree sampler continues N branches from one P-token trunk. Each branch appends its own
few tokens (an observation) and decodes. With KV forking only those few tokens are
prefilled per branch; without it every branch prefills the whole trunk again. Both arms
end with the same batched step that samples every branch's first token, so the time is
the time until all branches are under way; later decode steps cost the same in both.
"""

from __future__ import annotations

import random
import time
from typing import Any

from ..progress import Progress, counter, silent
from .base import Context, Policy, SamplingParams
from .spec import make_policy

BRANCH_TOKENS = 16
DECODE_TOKENS = 1  # each branch's first token: decoding itself costs the same either way
RATE_TOKENS = 32  # tokens per branch in the separate decode-speed run


def _branches(policy: Policy, n: int, prefix: int) -> tuple[list[int], list[list[int]]]:
    """A P-token trunk and N distinct branch suffixes of ordinary (non-special) ids."""
    rng = random.Random(0)
    special = set(policy.tokenizer.all_special_ids)
    pool = [i for i in range(len(policy.tokenizer)) if i not in special]
    trunk = rng.choices(pool, k=prefix)
    return trunk, [rng.choices(pool, k=BRANCH_TOKENS) for _ in range(n)]


def _fork_arm(policy: Policy, root: Context, suffixes: list[list[int]]) -> list[Context]:
    branches = []
    for suffix in suffixes:
        branch = policy.fork(root)
        policy.extend(branch, suffix)
        branches.append(branch)
    policy.generate(branches, SamplingParams(temperature=0, max_tokens=DECODE_TOKENS))
    return branches


def _recompute_arm(policy: Policy, root: Context, suffixes: list[list[int]]) -> list[Context]:
    branches = [policy.start(root.ids + suffix) for suffix in suffixes]
    policy.generate(branches, SamplingParams(temperature=0, max_tokens=DECODE_TOKENS))
    return branches


def _clock(arm, policy: Policy, root: Context, suffixes: list[list[int]]) -> float:
    start = time.perf_counter()
    branches = arm(policy, root, suffixes)
    elapsed = time.perf_counter() - start
    for ctx in branches:
        policy.release(ctx)
    return elapsed


def _counted(arm, policy: Policy, root: Context, suffixes: list[list[int]]
             ) -> tuple[int, int | None]:
    """Tokens one run of `arm` prefilled, by the ledger, and the KV memory its branches
    hold once under way (backends that can tell). Doubles as the warm-up run."""
    before = policy.ledger.prefilled
    branches = arm(policy, root, suffixes)
    kv_bytes = getattr(policy, "kv_bytes", None)
    held = kv_bytes(branches) if kv_bytes else None
    for ctx in branches:
        policy.release(ctx)
    return policy.ledger.prefilled - before, held


def _decode_rate(policy: Policy, root: Context, suffixes: list[list[int]]) -> float:
    """Tokens per second of batched decoding: every branch samples up to RATE_TOKENS more
    (greedy; a branch that reaches EOS leaves the batch, and only made tokens count)."""
    branches = [policy.fork(root) for _ in suffixes]
    for branch, suffix in zip(branches, suffixes, strict=True):
        policy.extend(branch, suffix)
    params = SamplingParams(temperature=0, max_tokens=RATE_TOKENS)
    start = time.perf_counter()
    made = policy.generate(branches, params)
    elapsed = time.perf_counter() - start
    for ctx in branches:
        policy.release(ctx)
    return sum(len(g.ids) for g in made) / elapsed


def bench_policy(
    n: int = 8, prefix: int = 512, spec: str = "tiny", repeats: int = 5,
    progress: Progress = silent, **options: Any
) -> dict:
    """Continue `n` branches from a `prefix`-token trunk: fork+extend vs re-prefill.

    The trunk exists before the clock starts, as it does at a branch point. Prefill
    counts come from the policy's ledger; times are the best of `repeats` after a warm-up;
    KV memory is what the branches hold, counting storage they share once. Decode speed
    is measured apart: `n` branches sampling RATE_TOKENS each in one batch.
    """
    progress(0, repeats + 2, f"loading {spec}")
    policy = make_policy(spec, **options)
    try:
        trunk, suffixes = _branches(policy, n, prefix)
        root = policy.start(trunk)
        fork_tokens, fork_kv = _counted(_fork_arm, policy, root, suffixes)
        recompute_tokens, recompute_kv = _counted(_recompute_arm, policy, root, suffixes)
        step = counter(progress, repeats + 2, "fork vs re-prefill, decode")
        step()
        # Interleaved repeats, best of each: other load on the machine hits both arms alike.
        runs = []
        for _ in range(repeats):
            runs.append((_clock(_fork_arm, policy, root, suffixes),
                         _clock(_recompute_arm, policy, root, suffixes)))
            step()
        fork_s, recompute_s = min(r[0] for r in runs), min(r[1] for r in runs)
        rate = _decode_rate(policy, root, suffixes)
        step()
    finally:
        policy.close()
    return {
        "backend": policy.backend,
        "spec": spec,
        "n": n,
        "prefix": prefix,
        "branch_tokens": BRANCH_TOKENS,
        "decode_tokens": DECODE_TOKENS,
        "fork_s": round(fork_s, 5),
        "recompute_s": round(recompute_s, 5),
        "speedup": round(recompute_s / fork_s, 2),
        "prefill_tokens_fork": fork_tokens,
        "prefill_tokens_recompute": recompute_tokens,
        # KV memory the N branches hold (the trunk's counted once when shared); null
        # where the backend manages KV itself (vLLM, a server)
        "kv_mib_fork": None if fork_kv is None else round(fork_kv / 2**20, 2),
        "kv_mib_recompute": None if recompute_kv is None else round(recompute_kv / 2**20, 2),
        "decode_tokens_per_s": round(rate, 1),
        "decode_batch": n,
    }
