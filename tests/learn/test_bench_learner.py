from treegym.learn.bench import bench_learner

KEYS = {"packed_step_s", "per_leaf_step_s", "speedup", "packed_peak_mb", "per_leaf_peak_mb",
        "max_abs_logprob_diff", "max_rel_grad_diff"}


def test_bench_learner_reports_its_keys_and_exactness():
    out = bench_learner(tasks=1, trees=2, leaves=2, prompt_tokens=16, turns=2,
                        action_tokens=4, obs_tokens=4, repeats=1, device="cpu")
    assert KEYS <= set(out)
    assert out["max_abs_logprob_diff"] <= 1e-5 and out["max_rel_grad_diff"] <= 1e-4
    assert out["packed_tokens"] < out["per_leaf_tokens"]
