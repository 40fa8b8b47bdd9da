"""Chain (GRPO) against tree (Tree-GRPO) training at the same generated-token budget.

Both runs start from the same weights (one warm start, run once and saved), see tasks
from the same seeds, and stop once they have generated `token_budget` tokens; the plot puts mean
kept-leaf reward against tokens generated so far, the cost that matters on one machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ChainConfig, TrainConfig, TreeConfig, WarmStart
from .loop import Log, train, warm_start_weights

MODES = {
    "chain": (ChainConfig(n=4), "grpo"),
    "tree": (TreeConfig(m=2, n=2, l=1, k=3), "tree_grpo"),
}


def compare(config: TrainConfig, log: Log | None = None) -> dict[str, list[dict[str, Any]]]:
    """Train once per mode under `config.out/MODE`; plot to `config.out/reward_vs_tokens.png`."""
    if config.warm_start.steps:
        path = warm_start_weights(config, config.out / "warm_start.safetensors", log)
        config = config.model_copy(update={"init_weights": path, "warm_start": WarmStart()})
    histories = {}
    for mode, (rollout, advantage) in MODES.items():
        run = config.model_copy(update={"rollout": rollout, "advantage": advantage,
                                        "out": config.out / mode})
        histories[mode] = train(run, log=(lambda r, m=mode: log({"mode": m, **r})) if log else None)
    plot(histories, config.out / "reward_vs_tokens.png")
    return histories


def plot(histories: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Reward against generated tokens, one line per mode (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, history in histories.items():
        ax.plot([r["generated"] for r in history], [r["reward"] for r in history],
                marker="o", label=mode)
    ax.set_xlabel("generated tokens")
    ax.set_ylabel("mean reward of kept leaves")
    ax.set_title("chain (GRPO) vs tree (Tree-GRPO) at equal token budget")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
