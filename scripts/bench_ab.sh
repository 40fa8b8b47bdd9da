#!/usr/bin/env bash
# Fork latency of two or more commits, measured alternately on this machine, so that a
# busy VM's drift falls on every side alike:
#     scripts/bench_ab.sh [-n ROUNDS] REV REV...
# Each round runs `treegym bench sandbox --json --no-docker --repeats 100` once per REV
# with that commit's sandboxes/ checked out (treegym itself stays the working tree's),
# and prints: rev, p50, p90, p99 (ms), fork_pss_mib and the resume p50 (ms, None for
# commits before the hand-over). sandboxes/ is restored after.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=4
if [[ "${1:-}" == "-n" ]]; then rounds=$2; shift 2; fi
if (( $# < 2 )); then echo "usage: $0 [-n ROUNDS] REV REV..." >&2; exit 2; fi
if ! git diff --quiet HEAD -- sandboxes; then
    echo "sandboxes/ has uncommitted changes; commit or stash them first" >&2; exit 2
fi
trap 'git restore --source=HEAD --staged --worktree -- sandboxes' EXIT
for ((i = 1; i <= rounds; i++)); do
    for rev in "$@"; do
        git restore --source="$rev" --staged --worktree -- sandboxes
        .venv/bin/treegym bench sandbox --json --no-docker --repeats 100 2>/dev/null \
            | python3 -c "import json, sys; d = json.load(sys.stdin); print('$rev', \
d['local_fork_p50_ms'], d['local_fork_p90_ms'], d['local_fork_p99_ms'], d['fork_pss_mib'], \
d.get('local_resume_p50_ms'))"
    done
done
