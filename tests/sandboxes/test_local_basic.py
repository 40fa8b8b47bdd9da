"""The local sandbox's contract: shell, persistent interpreter, files, fork semantics."""

from __future__ import annotations

import subprocess
import sys

import pytest

from treegym.sandboxes import LimitExceeded, SandboxDead, SandboxError, open_sandbox
from treegym.sandboxes.local import LocalSandbox

pytestmark = pytest.mark.usefixtures("local_leak_check")


def test_run_in_workdir_as_agent(sb: LocalSandbox) -> None:
    r = sb.run("pwd; id -un; echo err >&2; exit 3")
    assert r.stdout == "/workspace\nagent\n"
    assert r.stderr == "err\n"
    assert r.exit_code == 3 and not r.ok and not r.timed_out


def test_interpreter_state_persists(sb: LocalSandbox) -> None:
    sb.python("import json\nx = 41\nlog = open('log.txt', 'w')")
    assert sb.python("print(x + 1)").stdout == "42\n"
    assert sb.python("x + 1").stdout == "42\n"  # a final expression is echoed, like a notebook
    sb.python("log.write('kept open'); log.flush()")
    assert sb.read_file("log.txt") == b"kept open"
    assert sb.python("json.dumps([1])").stdout == "'[1]'\n"


def test_python_errors_are_tracebacks(sb: LocalSandbox) -> None:
    r = sb.python("def f():\n    raise ValueError('boom')\nf()")
    assert r.exit_code == 1
    assert "ValueError: boom" in r.stderr and 'line 2, in f' in r.stderr
    assert "_worker" not in r.stderr
    assert sb.python("1 +").exit_code == 1
    assert sb.python("import sys; sys.exit(4)").exit_code == 4
    assert sb.python("print('still alive')").stdout == "still alive\n"


def test_python_sees_subprocess_output(sb: LocalSandbox) -> None:
    r = sb.python("import subprocess; print('a', flush=True); _ = subprocess.run(['echo', 'b'])")
    assert r.stdout == "a\nb\n"


def test_files(sb: LocalSandbox) -> None:
    sb.write_file("pkg/mod.py", "VALUE = 7\n")
    sb.write_file("/workspace/raw.bin", b"\x00\xff")
    assert sb.read_file("pkg/mod.py") == b"VALUE = 7\n"
    assert sb.read_file("raw.bin") == b"\x00\xff"
    assert sb.listdir() == ["pkg", "raw.bin"]
    assert sb.listdir("pkg") == ["mod.py"]
    assert sb.python("from pkg.mod import VALUE; VALUE").stdout == "7\n"
    with pytest.raises(SandboxError):
        sb.read_file("missing.txt")


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../x", "/tmp/x"])
def test_paths_outside_workdir_are_refused(sb: LocalSandbox, path: str) -> None:
    with pytest.raises(SandboxError, match="outside"):
        sb.write_file(path, "x")
    with pytest.raises(SandboxError):
        sb.read_file(path)


def test_symlink_escape_is_refused(sb: LocalSandbox) -> None:
    sb.run("ln -s /etc link")
    with pytest.raises(SandboxError, match="symlink"):
        sb.read_file("link/passwd")
    with pytest.raises(SandboxError, match="symlink"):
        sb.write_file("link/new", "x")


def test_fork_copies_files_and_memory_then_diverges(sb: LocalSandbox) -> None:
    sb.write_file("state.txt", "base")
    sb.python("counter = 10\nhandle = open('state.txt')")
    child = sb.fork()
    try:
        assert child.python("counter").stdout == "10\n"
        assert child.read_file("state.txt") == b"base"
        child.python("counter += 1")
        child.write_file("state.txt", "child")
        child.run("rm -f gone.txt; echo new > child_only.txt")
        sb.python("counter -= 1")
        sb.write_file("state.txt", "parent")
        assert child.python("counter").stdout == "11\n"
        assert sb.python("counter").stdout == "9\n"
        assert child.read_file("state.txt") == b"child"
        assert sb.read_file("state.txt") == b"parent"
        assert "child_only.txt" not in sb.listdir()
        # a handle open across the fork is each branch's own (see _inherit.py)
        assert child.python("handle.read()").stdout == "'child'\n"
        assert sb.python("handle.seek(0); handle.read()").stdout == "'parent'\n"
    finally:
        child.close()


def test_siblings_are_isolated(sb: LocalSandbox) -> None:
    sb.write_file("shared.txt", "root")
    sb.run("mkdir -p /tmp/scratch && echo root > /tmp/scratch/f")
    kids = [sb.fork() for _ in range(3)]
    try:
        for i, kid in enumerate(kids):
            kid.python(f"me = {i}")
            kid.write_file("shared.txt", f"kid{i}")
            kid.run(f"rm shared.txt; echo kid{i} > shared.txt; echo {i} > /tmp/scratch/f")
        for i, kid in enumerate(kids):
            assert kid.python("me").stdout == f"{i}\n"
            assert kid.read_file("shared.txt") == f"kid{i}\n".encode()
            assert kid.run("cat /tmp/scratch/f").stdout == f"{i}\n"
        assert sb.read_file("shared.txt") == b"root"
        assert sb.run("cat /tmp/scratch/f").stdout == "root\n"
        assert "me" in sb.python("me").stderr  # NameError: the parent never saw it
    finally:
        for kid in kids:
            kid.close()


def test_forks_reseed_random(sb: LocalSandbox) -> None:
    sb.python("import random")
    kids = [sb.fork() for _ in range(3)]
    try:
        draws = {kid.python("random.random()").stdout for kid in kids}
        assert len(draws) == 3
    finally:
        for kid in kids:
            kid.close()


def test_closing_parent_keeps_child(sb: LocalSandbox) -> None:
    sb.python("v = 'inherited'")
    child = sb.fork()
    sb.close()
    try:
        assert child.python("v").stdout == "'inherited'\n"
        grandchild = child.fork()
        assert grandchild.python("v").stdout == "'inherited'\n"
        grandchild.close()
    finally:
        child.close()


def test_close_is_idempotent_and_final() -> None:
    with open_sandbox("local") as box:
        assert box.capabilities.fork_method == "overlayfs"
        assert box.capabilities.forks_memory and box.capabilities.forks_files
    box.close()
    with pytest.raises(SandboxDead):
        box.run("true")


def test_limits_are_configurable() -> None:
    with LocalSandbox(max_file_mb=1, cpu_seconds=1, max_output_bytes=100) as box:
        r = box.run("head -c 2M /dev/zero > big")
        assert r.limit == "file_size"
        with pytest.raises(LimitExceeded) as info:
            box.write_file("big2", b"x" * (2 << 20))
        assert info.value.limit == "file_size"
        r = box.run("python3 -c 'while 1: pass'")
        assert r.limit == "cpu" and not r.ok
        r = box.python("while True: pass")
        assert r.limit == "cpu" and r.exit_code == 1
        r = box.run("seq 1000")
        assert r.truncated and len(r.stdout) == 100
        assert box.python("print('ok')").stdout == "ok\n"


def test_without_user_namespaces_the_error_names_the_way_out() -> None:
    """Stands in for a host with user namespaces off (sysctl user.max_user_namespaces=0):
    an outer namespace allows exactly one more, which the unprivileged owner's own
    namespace uses up, so the sandbox's `unshare(CLONE_NEWUSER)` itself is refused."""
    code = ("from treegym.sandboxes import SandboxError, open_sandbox\n"
            "try:\n    open_sandbox('local')\nexcept SandboxError as e:\n    print(e)")
    r = subprocess.run(
        ["unshare", "-Ur", "sh", "-c",
         'echo 1 > /proc/sys/user/max_user_namespaces && '
         'exec unshare -U --map-user=65534 --map-group=65534 "$0" -c "$1"',
         sys.executable, code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cannot create the sandbox namespaces" in r.stdout, r.stdout
    assert "No space left on device" in r.stdout  # the namespace limit, not another error
    assert "no user namespace left" in r.stdout and "quota" in r.stdout
    assert "fork_method='commit'" in r.stdout
