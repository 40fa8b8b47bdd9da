"""Tree rollouts: branch by forking the world and the KV prefix together.

`collect(env_id, policy, TreeSampler(...) or ChainSampler(...), tasks)` returns the trees
and what they cost; both samplers run on one engine so their costs compare directly.
"""

from .collect import collect
from .samplers import ROOT, ChainSampler, Sampler, TreeSampler
from .sink import RolloutResult, TreeSink, finished_trees
from .stats import RolloutStats

__all__ = [
    "ROOT",
    "ChainSampler",
    "RolloutResult",
    "RolloutStats",
    "Sampler",
    "TreeSampler",
    "TreeSink",
    "collect",
    "finished_trees",
]
