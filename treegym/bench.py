"""`treegym bench` figures, gathered from each backend's own measuring function.

Benchmarks print numbers rather than assert them: speed depends on the machine, and a
timed test that flakes teaches people to ignore tests.
"""

from __future__ import annotations

from typing import Any

from .progress import Progress, silent

# null, with `docker_skipped` saying why, when Docker is not measured
DOCKER_FIGURES = ("docker_fork_p50_ms", "docker_fork_p90_ms", "docker_resume_p50_ms",
                  "docker_commit_fork_p50_ms", "fresh_container_p50_ms",
                  "speedup_vs_fresh_container")


def sandbox_report(n_files: int = 200, interp_mb: int = 50, repeats: int = 50,
                   docker: bool = True, progress: Progress = silent) -> dict[str, Any]:
    """Local fork latency against Docker's fork and a fresh container restored to the
    same state. Docker figures are null, with the reason, when no engine answers."""
    from .sandboxes.bench import measure_local_fork

    report: dict[str, Any] = measure_local_fork(n_files=n_files, interp_mb=interp_mb,
                                                repeats=repeats, progress=progress)
    report.update(dict.fromkeys(DOCKER_FIGURES), docker_skipped=None)
    if not docker:
        report["docker_skipped"] = "--no-docker"
        return report
    from .sandboxes.docker_bench import measure_docker
    from .sandboxes.docker_image import docker_client

    try:
        client = docker_client()
    except Exception as exc:  # noqa: BLE001 - report why, keep the local figures
        report["docker_skipped"] = str(exc).splitlines()[0]
        return report
    report.update(measure_docker(n_files=n_files, interp_mb=interp_mb, client=client,
                                 progress=progress))
    report["speedup_vs_fresh_container"] = round(
        report["fresh_container_p50_ms"] / report["local_fork_p50_ms"], 1)
    return report
