"""The copy fallback, used where overlayfs cannot be mounted in a user namespace."""

from __future__ import annotations

import pytest

from treegym.sandboxes.local import LocalSandbox

pytestmark = pytest.mark.usefixtures("local_leak_check")


def test_copy_fork_diverges_and_says_so() -> None:
    with LocalSandbox(fork_method="copy") as box:
        caps = box.capabilities
        assert caps.fork_method == "copy" and caps.forks_memory and "cp -a" in caps.notes
        box.write_file("a.txt", "base")
        box.run("mkdir -p /tmp/t && echo base > /tmp/t/f")
        box.python("n = 1")
        kids = [box.fork() for _ in range(2)]
        for i, kid in enumerate(kids):
            kid.python(f"n += {i + 1}")
            kid.write_file("a.txt", f"kid{i}")
            kid.run(f"rm /tmp/t/f; echo {i} > mine")
        grandchild = kids[0].fork()
        assert grandchild.python("n").stdout == "2\n"
        assert grandchild.read_file("a.txt") == b"kid0"
        grandchild.close()
        assert [k.python("n").stdout for k in kids] == ["2\n", "3\n"]
        assert [k.read_file("a.txt") for k in kids] == [b"kid0", b"kid1"]
        assert box.read_file("a.txt") == b"base" and "mine" not in box.listdir()
        assert box.run("cat /tmp/t/f").stdout == "base\n"
        for kid in kids:
            kid.close()


def test_default_is_overlayfs() -> None:
    with LocalSandbox() as box:
        assert box.capabilities.fork_method == "overlayfs"
