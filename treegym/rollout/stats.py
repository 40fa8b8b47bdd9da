"""What a rollout cost, and what independent chains would have cost for the same leaves.

The chain-equivalent figures are the point of treegym: a tree generates each distinct
token once and runs each trunk tool call once, while chains redo every shared turn.
"""

from __future__ import annotations

from pydantic import BaseModel, computed_field

from ..records import Tree


class RolloutStats(BaseModel):
    trees: int = 0
    leaves: int = 0
    kept_leaves: int = 0
    generated_tokens: int = 0
    prefilled_tokens: int = 0
    cached_tokens: int = 0
    tool_calls: int = 0
    tool_seconds: float = 0.0
    gen_seconds: float = 0.0
    wall_seconds: float = 0.0
    chain_generated_tokens: int = 0
    chain_prefilled_tokens: int = 0
    chain_tool_calls: int = 0
    kept_reward_sum: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean_reward(self) -> float:
        return self.kept_reward_sum / self.kept_leaves if self.kept_leaves else 0.0

    def add_tree(self, tree: Tree) -> None:
        """Count a finished tree: its distinct nodes, and the chains its leaves stand for."""
        self.trees += 1
        self.leaves += len(tree.leaves)
        self.kept_leaves += len(tree.kept)
        self.tool_calls += sum(len(node.calls) for node in tree.nodes)
        self.tool_seconds += sum(node.tool_seconds for node in tree.nodes)
        for leaf in tree.leaves:
            path = tree.path(leaf)
            self.chain_generated_tokens += sum(len(n.action_ids) for n in path)
            self.chain_prefilled_tokens += len(tree.prompt_ids) + sum(len(n.obs_ids) for n in path)
            self.chain_tool_calls += sum(len(n.calls) for n in path)
        self.kept_reward_sum += sum(tree.reward(leaf) for leaf in tree.kept)

    def rows(self) -> list[tuple[str, str, str]]:
        """(figure, this run, chain-equivalent) for the summary table."""
        return [
            ("leaves (kept)", f"{self.leaves} ({self.kept_leaves})", str(self.leaves)),
            ("generated tokens", str(self.generated_tokens), str(self.chain_generated_tokens)),
            ("prefilled tokens", str(self.prefilled_tokens), str(self.chain_prefilled_tokens)),
            ("cached tokens", str(self.cached_tokens), "0"),
            ("tool calls executed", str(self.tool_calls), str(self.chain_tool_calls)),
            ("tool seconds", f"{self.tool_seconds:.2f}", ""),
            ("generation seconds", f"{self.gen_seconds:.2f}", ""),
            ("wall seconds", f"{self.wall_seconds:.2f}", ""),
            ("generated tokens / s", f"{_rate(self.generated_tokens, self.wall_seconds)} wall, "
             f"{_rate(self.generated_tokens, self.gen_seconds)} generating", ""),
            ("mean reward (kept)", f"{self.mean_reward:.3f}", ""),
        ]


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f}" if seconds > 0 else "-"
