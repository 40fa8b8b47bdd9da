"""Tree rollouts: branch by forking the world and the KV prefix together.

`collect(env_id, policy, TreeSampler(...) or ChainSampler(...), tasks)` returns the trees
and what they cost; both samplers run on one engine so their costs compare directly.
"""

from .collect import collect
from .samplers import ChainSampler, Sampler, TreeSampler
from .sink import RolloutResult, TreeSink, finished_trees
from .stats import RolloutStats
from .tree import Point, TreeBuilder

__all__ = [
    "ChainSampler",
    "Point",
    "RolloutResult",
    "RolloutStats",
    "Sampler",
    "TreeBuilder",
    "TreeSampler",
    "TreeSink",
    "collect",
    "finished_trees",
]
