"""Timing of a forking backend's fork (local, or docker's tree), for `treegym bench sandbox`.

Measures the worst common case: the parent has written since its last fork, so every
fork freezes a layer and re-roots the parent as well as mounting the child's root.
The time runs from the call to `fork()` until the child has answered its hello, i.e. is
ready for its first call. The parent's next call (a small write) is timed too, as
`resume`: before it runs, the parent's worker hands over to a new one beside the child
(_worker.py's op_continue), which a rollout that goes on from the parent pays per fork.

Each hand-over puts the parent one pid namespace deeper, and past the kernel's nesting
limit forks stop making namespaces; so the forks are timed in rounds of
`_FORKS_PER_BOX`, each on a freshly set-up sandbox, all well inside the limit.

The memory a fork costs is measured as PSS (proportional set size: each shared page
split among the processes sharing it), summed over every process of the tree with
`_PSS_FORKS` live children that have each run a call, minus the same sum before, per
child. Pages still shared copy-on-write cost nothing; what each branch touched is what
it costs.
"""

from __future__ import annotations

import os
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
# Forks timed on one sandbox before a fresh one is set up: each fork nests the parent's
# continuation one pid namespace deeper, and the kernel stops at 32 (_nest.MAX_LEVEL).
_FORKS_PER_BOX = 16


def silent(done: int, total: int, what: str) -> None:
    """Report nothing."""


def measure_fork(open_box: Callable[[], LocalSandbox], n_files: int = 200, interp_mb: int = 50,
                 repeats: int = 100, progress: Progress = silent,
                 label: str = "forks") -> dict[str, Any]:
    """Fork latency percentiles (ms) of any forking backend, with a workspace of `n_files`
    files and an interpreter holding about `interp_mb` MiB of live data. A last fork
    checks that the child really has the parent's interpreter memory."""
    times: list[float] = []
    resumes: list[float] = []
    while len(times) < repeats:
        with open_box() as sb:
            sb.python(_FILL.format(n=n_files))
            sb.python(f"ballast = bytes(range(256)) * ({interp_mb} * 4096)")
            for i in range(min(_FORKS_PER_BOX, repeats - len(times)) + 3):
                start = time.perf_counter()
                child = sb.fork()
                forked = time.perf_counter()
                sb.write_file(f"turn{i}.txt", f"turn {i}")
                resumed = time.perf_counter()
                child.close()
                if i >= 3:  # the first forks warm caches
                    times.append((forked - start) * 1000)
                    resumes.append((resumed - forked) * 1000)
                    progress(len(times), repeats, label)
    with open_box() as sb:
        sb.python(_FILL.format(n=n_files))
        sb.python(f"ballast = bytes(range(256)) * ({interp_mb} * 4096)")
        rss = sb.python("print(next(l for l in open('/proc/self/status') "
                        "if l.startswith('VmRSS')).split()[1])").stdout
        size = sb.run("du -sk . | cut -f1; find . -type f | wc -l").stdout.split()
        with sb.fork() as child:
            if child.python("len(ballast)").stdout != sb.python("len(ballast)").stdout:
                raise RuntimeError("the forked child lost the interpreter's memory")
        fork_pss = _fork_pss_mib(sb)
        method = sb.capabilities.fork_method
    return {
        **percentiles_ms(times, 50, 90, 99),
        "resume_p50_ms": percentiles_ms(resumes, 50)["p50_ms"],
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
    top = _tree_top(sb.host_pid)
    before = _tree_pss_kib(top)
    children = [sb.fork() for _ in range(_PSS_FORKS)]
    try:
        for child in children:
            child.python("turn = 1")
        sb.python("turn = 1")
        after = _tree_pss_kib(top)
    finally:
        for child in children:
            child.close()
    return (after - before) / _PSS_FORKS / 1024


def _tree_top(pid: int) -> int:
    """The topmost process above `pid` outside this process's pid namespace: the tree's
    init (local) or the container's first process (docker), above all the tree's own."""
    procs, here = _procs.table(), _procs.pid_ns(os.getpid())
    while procs[pid].ppid in procs and _procs.pid_ns(procs[pid].ppid) != here:
        pid = procs[pid].ppid
    return pid


def _tree_pss_kib(top: int) -> int:
    """PSS summed over `top` and every process below it."""
    total = 0
    for pid in [top, *_procs.descendants(top)]:
        try:
            total += _pss_kib(pid)
        except OSError:  # gone since the listing
            continue
    return total


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
        "local_resume_p50_ms": r["resume_p50_ms"],
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
