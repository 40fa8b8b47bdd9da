"""The local backend as an unprivileged user (`nobody`), the way CI also runs it.

Where the test cannot drop to nobody it skips, unless TREEGYM_REQUIRE_NOBODY=1 (CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import skip_unless_required

import treegym.sandboxes

pytestmark = pytest.mark.usefixtures("local_leak_check")

_SCRIPT = """
import os, time
from sandboxes.local import LocalSandbox, worker_processes
assert os.getuid() != 0
with LocalSandbox() as box:
    assert box.run("id -un").stdout == "agent\\n"
    box.python("x = 5")
    box.write_file("f.txt", "parent")
    child = box.fork()
    child.python("x += 1")
    child.write_file("f.txt", "child")
    assert box.python("x").stdout == "5\\n" and child.python("x").stdout == "6\\n"
    assert box.read_file("f.txt") == b"parent" and child.read_file("f.txt") == b"child"
    assert child.capabilities.fork_method == "overlayfs"
    assert child.run("ls /root /work 2>&1; touch /usr/x").exit_code != 0
    child.close()
    # the hostile battery's core, as an unprivileged owner
    net = box.run("exec 3<>/dev/tcp/1.1.1.1/53 || getent hosts deb.debian.org", timeout=5)
    assert not net.ok
    bomb = box.run(":(){ :|:& };:; sleep 1", timeout=4)
    assert bomb.limit == "processes" or bomb.timed_out
    assert box.python("hog = bytearray(8 << 30)").limit == "memory"
    assert box.run("while :; do :; done", timeout=1).timed_out
    flood = box.run("yes | head -c 100000000")
    assert flood.truncated and len(flood.stdout) <= box.limits.max_output_bytes
    box.run("kill -9 -1")
    assert box.python("print('usable')").stdout == "usable\\n"
print("workers left:", len(worker_processes()))
"""

_DEPS = ("pydantic", "pydantic_core", "typing_extensions", "annotated_types",
         "typing_inspection")


def _copy_module(name: str, dest: Path) -> None:
    mod = __import__(name)
    src = Path(mod.__file__)
    if src.name == "__init__.py":
        shutil.copytree(src.parent, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy(src, dest / src.name)


@pytest.fixture
def nobody_tree() -> Iterator[Path]:
    """A world-readable copy of the package: `nobody` cannot read the venv under /root."""
    root = Path(tempfile.mkdtemp(prefix="treegym-nobody-"))
    lib = root / "lib"
    lib.mkdir()
    shutil.copytree(Path(treegym.sandboxes.__file__).parent, lib / "sandboxes",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in _DEPS:
        _copy_module(name, lib)
    (root / "run.py").write_text(_SCRIPT)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    yield root
    shutil.rmtree(root)


def test_open_run_python_fork_close_as_nobody(nobody_tree: Path) -> None:
    python = "/usr/bin/python3"
    if sys.version_info[:2] != tuple(int(x) for x in subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True).stdout.split()):
        skip_unless_required("TREEGYM_REQUIRE_NOBODY", "the copied pydantic_core is built for "
                             "another Python than /usr/bin/python3")
    cmd = [python, str(nobody_tree / "run.py")]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            skip_unless_required("TREEGYM_REQUIRE_NOBODY", "setpriv is needed to drop to nobody")
        cmd = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(nobody_tree / "lib")}
    r = subprocess.run(cmd, env=env, cwd=nobody_tree, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "workers left: 0" in r.stdout
