"""Policies: make tokens for many contexts at once and fork KV prefixes without recompute.

Pick one with `make_policy(spec)`; see spec.py for the spec strings and README.md here
for loading real checkpoints.
"""

from .base import Context, Generation, Ledger, Policy, PolicyError, SamplingParams
from .chat import ChatRenderer, load_tokenizer
from .menu import MenuPolicy
from .routing import RoutedPolicy, make_worker_policy, split_endpoints
from .smollm2 import init_smollm2, smollm2_path
from .spec import make_policy
from .tiny import init_tiny, tiny_path

__all__ = [
    "ChatRenderer",
    "Context",
    "Generation",
    "Ledger",
    "MenuPolicy",
    "Policy",
    "PolicyError",
    "RoutedPolicy",
    "SamplingParams",
    "init_smollm2",
    "init_tiny",
    "load_tokenizer",
    "make_policy",
    "make_worker_policy",
    "smollm2_path",
    "split_endpoints",
    "tiny_path",
]
