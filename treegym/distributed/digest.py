"""A tree's content hash: what the tree is, not how fast or on which kernel it was made.

It covers the task, the prompt and every node's ids, text, tool calls, results, rewards
and place in the tree, plus the kept leaves. It leaves out timings, and the float
log-probs and entropies: batched kernels round those differently in the last bits
depending on batch shape and thread count (about 1e-5 here), while the sampled ids,
drawn with per-branch seeds, do not change. Compare log-probs with a tolerance.
"""

from __future__ import annotations

import hashlib
import json

from ..records import Tree

_NOT_CONTENT = {"gen_seconds", "tool_seconds", "action_logprobs", "entropies"}


def tree_digest(tree: Tree) -> str:
    """sha256 of the tree's content (see the module docstring), as hex."""
    nodes = [
        node.model_dump(mode="json", exclude=_NOT_CONTENT | {"results"})
        | {"results": [r.model_dump(mode="json", exclude={"seconds"}) for r in node.results]}
        for node in tree.nodes
    ]
    body = tree.model_dump_json(exclude={"nodes"}) + json.dumps(nodes, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()
