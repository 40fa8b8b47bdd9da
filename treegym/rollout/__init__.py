"""Tree rollouts: branch by forking the world and the KV prefix together.

`collect(env_id, policy, TreeSampler(...) or ChainSampler(...), tasks)` returns the trees
and what they cost; both samplers run on one engine so their costs compare directly.
"""

from .collect import RolloutResult, collect, finished_trees
from .samplers import ROOT, ChainSampler, Sampler, TreeSampler
from .stats import RolloutStats

__all__ = [
    "ROOT",
    "ChainSampler",
    "RolloutResult",
    "RolloutStats",
    "Sampler",
    "TreeSampler",
    "collect",
    "finished_trees",
]
