"""Timing of the local backend's fork, for `treegym bench sandbox`.

Measures the worst common case: the parent has written since its last fork, so every
fork freezes a layer and re-roots the parent as well as mounting the child's root. The
time runs from the call to `fork()` until the child has answered its hello, i.e. is
ready for its first call.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from .local import LocalSandbox

_FILL = """
import os
for i in range({n}):
    d = f"src/pkg{{i % 10}}"
    os.makedirs(d, exist_ok=True)
    with open(f"{{d}}/mod{{i}}.py", "w") as f:
        f.write(("x = %d\\n" % i) * 200)
"""


def measure_local_fork(n_files: int = 200, interp_mb: int = 50, repeats: int = 100,
                       fork_method: str = "overlayfs") -> dict[str, Any]:
    """Fork latency percentiles (ms) with a workspace of `n_files` files and an
    interpreter holding about `interp_mb` MiB of live data."""
    with LocalSandbox(fork_method=fork_method) as sb:
        sb.python(_FILL.format(n=n_files))
        sb.python(f"ballast = bytes(range(256)) * ({interp_mb} * 4096)")
        rss = sb.python("print(next(l for l in open('/proc/self/status') "
                        "if l.startswith('VmRSS')).split()[1])").stdout
        size = sb.run("du -sk . | cut -f1; find . -type f | wc -l").stdout.split()
        times = []
        for i in range(repeats + 3):
            sb.write_file(f"turn{i}.txt", f"turn {i}")
            start = time.perf_counter()
            child = sb.fork()
            elapsed = time.perf_counter() - start
            child.close()
            if i >= 3:  # the first forks warm caches
                times.append(elapsed * 1000)
        method = sb.capabilities.fork_method
    q = statistics.quantiles(times, n=10)
    return {
        "local_fork_p50_ms": round(statistics.median(times), 3),
        "local_fork_p90_ms": round(q[8], 3),
        "local_fork_method": method,
        "local_fork_repeats": repeats,
        "workspace_files": int(size[1]),
        "workspace_kib": int(size[0]),
        "interpreter_rss_mib": round(int(rss) / 1024, 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure_local_fork()))
