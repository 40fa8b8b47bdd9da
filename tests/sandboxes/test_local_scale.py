"""Deep fork chains and wide fans of live siblings."""

from __future__ import annotations

import logging
import os

import pytest

from treegym.sandboxes.local import LocalSandbox, worker_processes

pytestmark = pytest.mark.usefixtures("local_leak_check")


def test_depth_64_fork_chain(sb: LocalSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="treegym.sandboxes.local")
    sb.python("depth = 0")
    chain = [sb]
    try:
        for i in range(1, 65):
            node = chain[-1].fork()
            chain.append(node)
            node.python("depth += 1")
            node.run(f"echo {i} >> trail.txt; rm -f mark{i - 1}; touch mark{i}")
        last = chain[-1]
        assert last.python("depth").stdout == "64\n"
        assert last.read_file("trail.txt").split() == [str(i).encode() for i in range(1, 65)]
        assert [n for n in last.listdir() if n.startswith("mark")] == ["mark64"]
        assert chain[32].read_file("trail.txt").split()[-1] == b"32"
        assert chain[32].python("depth").stdout == "32\n"
        assert sb.python("depth").stdout == "0\n"
        assert "trail.txt" not in sb.listdir()
        # 64 levels went past squash_every (32): the stack was squashed, never near the
        # kernel's overlay depth limit
        root = last.python("print(next(line for line in open('/proc/self/mountinfo') "
                           "if line.split()[4] == '/' and ' overlay ' in line))").stdout
        lowers = root.split("lowerdir=")[1].split(",")[0].split(":")
        assert len(lowers) <= 33, root
        # past the kernel's nesting the forks share namespaces, which is said once a tree
        said = [r.message for r in caplog.records if "nested pid namespaces" in r.message]
        assert len(said) == 1 and "can see and signal each other's" in said[0]
    finally:
        for node in chain[1:]:
            node.close()


def test_200_live_siblings(sb: LocalSandbox) -> None:
    before = len(worker_processes(os.getpid(), inits=False))
    sb.write_file("base.txt", "base")
    sb.python("value = 'base'")
    kids = [sb.fork() for _ in range(200)]
    try:
        assert len(worker_processes(os.getpid(), inits=False)) == before + 200
        for i, kid in enumerate(kids):
            kid.python(f"value = {i}")
            kid.write_file("base.txt", str(i))
        for i in (0, 57, 123, 199):
            assert kids[i].python("value").stdout == f"{i}\n"
            assert kids[i].read_file("base.txt") == str(i).encode()
            assert kids[i].run("cat base.txt").stdout == str(i)
        assert sb.read_file("base.txt") == b"base"
    finally:
        for kid in kids:
            kid.close()
    assert len(worker_processes(os.getpid(), inits=False)) == before
