"""The learner: advantages over tree records, packed-tree scoring, the clipped PG loss.

It reads records only (`treegym.records`), never live rollout objects, so it trains just
as well from JSONL files as from a rollout that just finished.
"""

from .advantages import ESTIMATORS, grpo, tree_grpo, tree_grpo_intra
from .learner import Learner, OptimConfig
from .loss import LossConfig
from .packing import PackedSequence, pack, rows

__all__ = [
    "ESTIMATORS",
    "Learner",
    "LossConfig",
    "OptimConfig",
    "PackedSequence",
    "grpo",
    "pack",
    "rows",
    "tree_grpo",
    "tree_grpo_intra",
]
