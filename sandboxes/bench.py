"""Timing of a forking backend's fork (local, or docker's tree), for `treegym bench sandbox`.

Measures the worst common case: the parent has written since its last fork, so every
fork freezes a layer and re-roots the parent as well as mounting the child's root. The
time runs from the call to `fork()` until the child has answered its hello, i.e. is
ready for its first call.

The memory a fork costs is measured as PSS (proportional set size: each shared page
split among the processes sharing it), summed over the parent and `_PSS_FORKS` live
children that have each run a call (and their branch inits), minus the parent's alone
before, per child. Pages
still shared copy-on-write cost nothing; what each branch touched is what it costs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from . import _procs
from .local import LocalSandbox

_FILL = """
import os
for i in range({n}):
    d = f"src/pkg{{i % 10}}"
    os.makedirs(d, exist_ok=True)
    with open(f"{{d}}/mod{{i}}.py", "w") as f:
        f.write(("x = %d\\n" % i) * 200)
"""


Progress = Callable[[int, int, str], None]  # (done, total, what), as treegym.progress
_PSS_FORKS = 8


def silent(done: int, total: int, what: str) -> None:
    """Report nothing."""


def measure_fork(open_box: Callable[[], LocalSandbox], n_files: int = 200, interp_mb: int = 50,
                 repeats: int = 100, progress: Progress = silent,
                 label: str = "forks") -> dict[str, Any]:
    """Fork latency percentiles (ms) of any forking backend, with a workspace of `n_files`
    files and an interpreter holding about `interp_mb` MiB of live data. A last fork
    checks that the child really has the parent's interpreter memory."""
    with open_box() as sb:
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
            progress(i + 1, repeats + 3, label)
        with sb.fork() as child:
            if child.python("len(ballast)").stdout != sb.python("len(ballast)").stdout:
                raise RuntimeError("the forked child lost the interpreter's memory")
        fork_pss = _fork_pss_mib(sb)
        method = sb.capabilities.fork_method
    return {
        **percentiles_ms(times, 50, 90, 99),
        "fork_pss_mib": round(fork_pss, 3),
        "method": method,
        "repeats": repeats,
        "workspace_files": int(size[1]),
        "workspace_kib": int(size[0]),
        "interpreter_rss_mib": round(int(rss) / 1024, 1),
    }


def _fork_pss_mib(sb: LocalSandbox) -> float:
    """PSS each live fork adds to the tree (see the module docstring), its branch init
    (which shares the worker's pages: _nest.py) included."""
    before = _pss_kib(sb.host_pid)
    children = [sb.fork() for _ in range(_PSS_FORKS)]
    try:
        for child in children:
            child.python("turn = 1")
        inits = [p.pid for p in _procs.table().values()
                 if p.ppid == sb.host_pid and _procs.name(p.pid) == _procs.INIT_NAME]
        after = sum(_pss_kib(pid) for pid in
                    [sb.host_pid, *inits, *(child.host_pid for child in children)])
    finally:
        for child in children:
            child.close()
    return (after - before) / _PSS_FORKS / 1024


def _pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return int(next(line for line in f if line.startswith("Pss:")).split()[1])


def measure_local_fork(n_files: int = 200, interp_mb: int = 50, repeats: int = 100,
                       fork_method: str = "overlayfs",
                       progress: Progress = silent) -> dict[str, Any]:
    """`measure_fork` of the local backend, under the keys `treegym bench sandbox` prints."""
    r = measure_fork(lambda: LocalSandbox(fork_method=fork_method), n_files, interp_mb, repeats,
                     progress, "local forks")
    return {
        "local_fork_p50_ms": r["p50_ms"],
        "local_fork_p90_ms": r["p90_ms"],
        "local_fork_p99_ms": r["p99_ms"],
        "fork_pss_mib": r["fork_pss_mib"],
        "local_fork_method": r["method"],
        "local_fork_repeats": repeats,
        "workspace_files": r["workspace_files"],
        "workspace_kib": r["workspace_kib"],
        "interpreter_rss_mib": r["interpreter_rss_mib"],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure_local_fork()))


def percentiles_ms(times_ms: list[float], *points: int) -> dict[str, float]:
    """`{"p50_ms": ..., "p90_ms": ...}` for `points`, rounded to 3 decimals: p50 is the
    median, the others cut points of 100 quantiles, so every bench reports tails alike."""
    q = statistics.quantiles(times_ms, n=100)
    return {f"p{p}_ms": round(statistics.median(times_ms) if p == 50 else q[p - 1], 3)
            for p in points}
