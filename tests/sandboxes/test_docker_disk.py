"""The commit backend's disk and inode cap against a real engine: agent code that fills the
disk with big files or with many small ones is stopped near the cap, the branch refuses
more, and a fork made before is untouched. Skips without an engine, as test_docker.py does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from treegym.sandboxes import LimitExceeded
from treegym.sandboxes.docker import DockerSandbox

DISK_MB = 48
MAX_FILES = 3000
# What a fill may add past the cap before it is stopped. Measured on a 2-CPU VM: shell fills
# 1-4 MiB and python fills 0-22 MiB past (14 runs), tens of files. The python loop writes
# 8 MiB a syscall at about 1 GB/s, so 20 ms of scheduling delay for the watcher is 20 MiB.
MARGIN_MB = 32
MARGIN_FILES = 2000

FILLS = {
    ("run", "disk"): "i=0; while :; do head -c 8000000 /dev/zero > big$i || exit 3; i=$((i+1)); "
                     "done",
    ("python", "disk"): "i = 0\nwhile True:\n    open(f'big{i}', 'wb').write(bytes(8 << 20))\n"
                        "    i += 1",
    ("run", "files"): "mkdir many; cd many; i=0; while :; do : > f$i; i=$((i+1)); done",
    ("python", "files"): "import os\nos.mkdir('many')\ni = 0\nwhile True:\n"
                         "    open(f'many/f{i}', 'w').close()\n    i += 1",
}


@pytest.fixture
def capped(docker_client: Any) -> Iterator[DockerSandbox]:
    sb = DockerSandbox(client=docker_client, disk_mb=DISK_MB, max_files=MAX_FILES,
                       max_file_mb=10, timeout=30)
    yield sb
    sb.close()


def layer_bytes(client: Any, sb: DockerSandbox) -> int:
    """The container's writable layer on the host disk, as the engine measures it."""
    [row] = client.api.containers(all=True, size=True, filters={"id": sb.container_id})
    return row["SizeRw"]


@pytest.mark.parametrize(("via", "limit"), list(FILLS))
def test_a_fill_is_stopped_near_the_cap_and_spares_an_earlier_fork(
    docker_client: Any, capped: DockerSandbox, via: str, limit: str
) -> None:
    capped.write_file("kept.txt", "before the fill\n")
    sibling = capped.fork()
    try:
        start = time.monotonic()
        call = capped.run if via == "run" else capped.python
        with pytest.raises(LimitExceeded) as hit:
            call(FILLS[via, limit])
        took = time.monotonic() - start
        field = "disk_mb" if limit == "disk" else "max_files"
        cap = DISK_MB if limit == "disk" else MAX_FILES
        assert hit.value.limit == limit
        assert f"over {field}={cap}" in str(hit.value) and f"{field}={2 * cap}" in str(hit.value)
        assert took < 20, f"the fill ran {took:.1f} s before it was stopped"

        size = layer_bytes(docker_client, capped)
        names = capped.listdir("many") if limit == "files" else capped.listdir()
        print(f"{via}/{limit}: stopped after {took:.2f} s; layer {size / 2**20:.1f} MiB, "
              f"{len(names)} files")
        assert size < (DISK_MB + MARGIN_MB) << 20
        assert len(names) < MAX_FILES + MARGIN_FILES

        # The branch takes nothing more, and says why each time; its files stay readable.
        for refused in (lambda: capped.run("true"), lambda: capped.python("1"),
                        lambda: capped.write_file("more.txt", "x"), capped.fork):
            with pytest.raises(LimitExceeded, match=field):
                refused()
        assert capped.read_file("kept.txt") == b"before the fill\n"

        # The fork made before has none of it and its own full cap.
        assert sibling.listdir() == ["kept.txt"]
        r = sibling.run("head -c 8000000 /dev/zero > fits.bin && ls | wc -l")
        assert r.ok and r.stdout.strip() == "2", r
        assert sibling.python("open('kept.txt').read()").stdout == "'before the fill\\n'\n"
    finally:
        sibling.close()


def test_unreadable_dirs_and_sparse_files_still_count(capped: DockerSandbox) -> None:
    """Sparse files count at their full size (a commit writes them out whole), and a
    directory the agent made mode 000 is measured all the same: 25 MiB hidden plus 30 MiB
    in plain sight pass the 48 MiB cap, where either alone would not."""
    r = capped.run("mkdir -p hide/deep && truncate -s 5M hide/deep/a hide/deep/b hide/deep/c "
                   "hide/deep/d hide/deep/e && chmod 000 hide && ls hide")
    assert r.exit_code != 0 and "Permission denied" in r.stderr, r
    with pytest.raises(LimitExceeded) as hit:
        capped.run("for i in 1 2 3; do head -c 10000000 /dev/zero > seen$i; done; sleep 5")
    assert hit.value.limit == "disk"
    assert f"over disk_mb={DISK_MB}" in str(hit.value), hit.value


def test_a_background_writer_cannot_fill_between_calls(capped: DockerSandbox) -> None:
    r = capped.run("(sleep 0.3; i=0; while :; do head -c 8000000 /dev/zero > bg$i; "
                   "i=$((i+1)); done) > /dev/null 2>&1 &")
    assert r.ok, r
    time.sleep(3)
    with pytest.raises(LimitExceeded, match="disk_mb"):
        capped.fork()
    assert len(capped.listdir()) < DISK_MB // 8 + 4


def test_limits_below_one_are_refused(docker_client: Any) -> None:
    from treegym.sandboxes import SandboxError

    with pytest.raises(SandboxError, match="disk_mb=0"):
        DockerSandbox(client=docker_client, disk_mb=0)
