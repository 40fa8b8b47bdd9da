"""Docker numbers for `treegym bench sandbox`: the tree fork, the commit fork, and a fresh
container.

All start from the same world: a workspace of `n_files` small files and an interpreter
holding about `interp_mb` MB. The fresh-container figure includes restoring that world
(writing the files, rebuilding the interpreter state), since that is what a backend
without fork would pay at every branch point. The default docker fork (one container per
tree, `DockerTreeSandbox`) copies files and memory; the commit fork copies only files.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from .base import SandboxLimits
from .bench import Progress, measure_fork, silent
from .docker import DockerSandbox
from .docker_image import docker_client, ensure_image
from .docker_tree import DockerTreeSandbox


def _restore(sb: DockerSandbox, files: dict[str, bytes], interp_mb: int) -> None:
    for path, data in files.items():
        sb.write_file(path, data)
    result = sb.python(f"state = [bytes(1024) for _ in range({interp_mb} * 1024)]")
    if not result.ok:
        raise RuntimeError(f"could not build the interpreter state: {result.stderr}")


def measure_docker(
    n_files: int = 200,
    interp_mb: int = 50,
    repeats: int = 5,
    tree_repeats: int = 50,
    file_bytes: int = 4096,
    client: Any = None,
    progress: Progress = silent,
) -> dict[str, Any]:
    """Milliseconds for a tree fork (p50, p90), a commit fork and a fresh container plus
    restore (medians of `repeats`; tree forks are cheap enough for `tree_repeats`)."""
    client = client or docker_client()
    image = ensure_image(client=client)
    limits = SandboxLimits(memory_mb=max(1024, 4 * interp_mb))
    files = {
        f"src/pkg{i % 10}/file{i}.txt": bytes([65 + i % 26]) * file_bytes for i in range(n_files)
    }

    fresh_ms = []
    for i in range(repeats):
        progress(i, repeats, "fresh containers")
        start = time.perf_counter()
        sb = DockerSandbox(image=image, limits=limits, client=client)
        _restore(sb, files, interp_mb)
        fresh_ms.append((time.perf_counter() - start) * 1000)
        sb.close()

    fork_ms = []
    with DockerSandbox(image=image, limits=limits, client=client) as parent:
        _restore(parent, files, interp_mb)
        rss = parent.python(
            "import resource; resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024"
        )
        for i in range(repeats):
            progress(i, repeats, "commit forks")
            start = time.perf_counter()
            child = parent.fork()
            fork_ms.append((time.perf_counter() - start) * 1000)
            copied = len(child.run("find src -type f").stdout.split())
            child.close()
            if copied != n_files:
                raise RuntimeError(f"the fork saw {copied} of {n_files} files")

    tree = measure_fork(lambda: DockerTreeSandbox(image=image, client=client), n_files,
                        interp_mb, tree_repeats, progress, "docker tree forks")
    return {
        "docker_fork_p50_ms": tree["p50_ms"],
        "docker_fork_p90_ms": tree["p90_ms"],
        "docker_fork_p99_ms": tree["p99_ms"],
        "docker_resume_p50_ms": tree["resume_p50_ms"],
        "docker_fork_pss_mib": tree["fork_pss_mib"],
        "docker_fork_method": f"tree/{tree['method']}",
        "docker_fork_copies_memory": True,
        "docker_commit_fork_p50_ms": round(statistics.median(fork_ms), 1),
        "fresh_container_p50_ms": round(statistics.median(fresh_ms), 1),
        "docker_repeats": repeats,
        "docker_workspace_files": n_files,
        "docker_workspace_bytes": n_files * file_bytes,
        "docker_interpreter_mb": interp_mb,
        "docker_interpreter_rss_mb": int(rss.stdout.strip()),
    }
