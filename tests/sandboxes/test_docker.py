"""The docker backend's commit forks against a real engine: forking, persistence, hardening,
limits, cleanup. The default, tree-forking docker sandbox is tested in test_docker_tree.py.

These need a Docker engine (.ci/start-docker.sh starts one). Without one they skip, unless
TREEGYM_REQUIRE_DOCKER=1 makes a missing engine a failure.
"""

from __future__ import annotations

import gc
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from docker_helpers import start_owner

from treegym.sandboxes import (
    LimitExceeded,
    SandboxDead,
    SandboxError,
    SandboxLimits,
    open_sandbox,
)
from treegym.sandboxes._docker_owned import LABEL, OWNER_LABEL, owner_id, remove_stale
from treegym.sandboxes.docker import DockerSandbox


@pytest.fixture
def docker_limits() -> SandboxLimits:
    """Small caps so limit tests finish fast."""
    return SandboxLimits(
        timeout=20,
        cpu_seconds=1,
        memory_mb=200,
        max_processes=32,
        max_file_mb=5,
        max_output_bytes=4096,
    )


@pytest.fixture
def docker_sandbox(docker_client: Any, docker_limits: SandboxLimits) -> Iterator[DockerSandbox]:
    sb = DockerSandbox(limits=docker_limits, client=docker_client)
    yield sb
    sb.close()


def labeled(client: Any, owner: str | None = None) -> tuple[set[str], set[str]]:
    """Ids of the containers and images that one treegym process (this one by default) has
    made and that exist now; other users of the engine don't disturb the count."""
    filters = {"label": f"{OWNER_LABEL}={owner or owner_id()}"}
    containers = {c.id for c in client.containers.list(all=True, filters=filters)}
    images = {i.id for i in client.images.list(filters=filters)}
    return containers, images


def test_open_sandbox_docker_commit_runs_as_agent_in_workdir(docker_client: Any) -> None:
    with open_sandbox("docker", fork_method="commit", client=docker_client) as sb:
        assert isinstance(sb, DockerSandbox)
        r = sb.run("id -un; pwd")
        assert r.ok, r
        assert r.stdout.split() == ["agent", "/workspace"]


def test_capabilities_say_files_not_memory(docker_sandbox: DockerSandbox) -> None:
    caps = docker_sandbox.capabilities
    assert caps.backend == "docker"
    assert caps.forks_files and not caps.forks_memory
    assert caps.fork_method == "commit"
    assert "CRIU" in caps.notes
    assert "no-network" in caps.isolation


def test_files_roundtrip(docker_sandbox: DockerSandbox) -> None:
    sb = docker_sandbox
    sb.write_file("pkg/mod.py", "X = 1\n")
    sb.write_file("blob.bin", bytes(range(256)))
    assert sb.read_file("pkg/mod.py") == b"X = 1\n"
    assert sb.read_file("/workspace/blob.bin") == bytes(range(256))
    assert sb.listdir() == ["blob.bin", "pkg"]
    assert sb.run("cat pkg/mod.py").stdout == "X = 1\n"
    with pytest.raises(SandboxError, match="No such file"):
        sb.read_file("missing.txt")
    with pytest.raises(SandboxError, match="outside the sandbox's work dir"):
        sb.write_file("/etc/evil", "x")
    sb.run("mkdir locked && chmod 500 locked")
    with pytest.raises(SandboxError, match="Permission denied"):
        sb.write_file("locked/x", "x")  # file ops have the agent's permissions, not root's


def test_file_ops_follow_no_link_and_touch_only_regular_files(
        docker_sandbox: DockerSandbox) -> None:
    """The same rules as the local backend's (_files.py): a FIFO or /dev/zero planted
    under a name neither hangs nor floods the worker, and no link is followed out."""
    sb = docker_sandbox
    sb.run("mkfifo pipe && ln -s /dev/zero zero && ln -s /etc/passwd pw && ln -s /etc etc")
    start = time.monotonic()
    with pytest.raises(SandboxError, match="regular file"):
        sb.read_file("pipe")
    with pytest.raises(SandboxError, match="regular file"):
        sb.write_file("pipe", "x")
    for name in ("zero", "pw"):
        with pytest.raises(SandboxError, match="symlink"):
            sb.read_file(name)
    with pytest.raises(SandboxError, match="symlink"):
        sb.write_file("etc/evil", "x")
    assert time.monotonic() - start < 5
    sb.write_file("a/b/c.txt", "fine")  # parents are made, one checked step at a time
    assert sb.read_file("a/b/c.txt") == b"fine"
    assert sb.run("echo alive").stdout == "alive\n"


def test_interpreter_persists_between_calls(docker_sandbox: DockerSandbox) -> None:
    sb = docker_sandbox
    assert sb.python("import math\nx = 41\nf = open('log.txt', 'w')").ok
    assert sb.python("print(x + 1)").stdout == "42\n"
    assert sb.python("x + 1").stdout == "42\n"  # a trailing expression is echoed
    assert sb.python("f.write('kept'); f.close(); math.pi > 3").stdout == "True\n"
    assert sb.read_file("log.txt") == b"kept"
    err = sb.python("1/0")
    assert err.exit_code == 1 and "ZeroDivisionError" in err.stderr
    assert sb.python("x").stdout == "41\n"  # an exception loses nothing


# Agent code finds the interpreter's reply pipe (its only write-only pipe) and writes a frame.
_WRITE_TO_REPLY_PIPE = """
import fcntl, os, stat, struct
for name in os.listdir("/proc/self/fd"):
    try:
        fd = int(name)
        if (fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode)
                and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY):
            os.write(fd, {frame})
    except OSError:
        pass
import time; time.sleep(5)
"""


@pytest.mark.parametrize("frame", [
    "struct.pack('!II', 1 << 30, 0)",  # a header claiming a gigabyte
    "struct.pack('!II', 40, 0) + b'{'",  # half a frame, never finished
    "struct.pack('!II', 2, 0) + b'[]'",  # not an object
    "(lambda b: struct.pack('!II', len(b), 0) + b)(b'{\"exit_code\": 0, \"limit\": 7}')",
])
def test_a_frame_forged_on_the_reply_pipe_restarts_the_interpreter(
    docker_sandbox: DockerSandbox, frame: str
) -> None:
    docker_sandbox.python("kept = 1")
    start = time.monotonic()
    r = docker_sandbox.python(_WRITE_TO_REPLY_PIPE.format(frame=frame), timeout=15)
    assert time.monotonic() - start < 4, "the worker waited on the forged frame"
    assert r.exit_code != 0 and not r.timed_out
    assert "restarted because its code wrote to the interpreter's reply pipe" in r.stderr
    assert docker_sandbox.python("print('kept' in globals(), 6 * 7)").stdout == "False 42\n"


def test_fork_diverges_files_and_siblings_are_isolated(docker_sandbox: DockerSandbox) -> None:
    parent = docker_sandbox
    parent.write_file("shared.txt", "root")
    parent.python("x = 1")
    a = parent.fork()
    b = parent.fork()
    try:
        assert a.read_file("shared.txt") == b.read_file("shared.txt") == b"root"
        a.write_file("shared.txt", "a")
        b.run("echo b > shared.txt && touch only_b")
        parent.write_file("shared.txt", "parent")
        assert parent.read_file("shared.txt") == b"parent"
        assert a.read_file("shared.txt") == b"a"
        assert b.read_file("shared.txt") == b"b\n"
        assert "only_b" in b.listdir() and "only_b" not in a.listdir()
        assert "only_b" not in parent.listdir()
        # Memory is not forked: the child's interpreter is fresh, the parent's is intact.
        assert "NameError" in a.python("x").stderr
        assert parent.python("x").stdout == "1\n"
        grandchild = a.fork()
        with grandchild:
            assert grandchild.read_file("shared.txt") == b"a"
    finally:
        a.close()
        b.close()


def test_network_is_blocked(docker_sandbox: DockerSandbox) -> None:
    probe = (
        "import socket\n"
        "for host in ('1.1.1.1', 'deb.debian.org'):\n"
        "    try:\n"
        "        socket.create_connection((host, 80), timeout=3)\n"
        "        print('connected', host)\n"
        "    except OSError as e:\n"
        "        print('blocked', host, type(e).__name__)\n"
    )
    out = docker_sandbox.python(probe).stdout
    assert "connected" not in out and out.count("blocked") == 2
    assert (
        docker_sandbox.run("cat /sys/class/net/*/operstate; ls /sys/class/net").stdout.split()[-1]
        == "lo"
    )


def test_agent_has_no_capabilities(docker_sandbox: DockerSandbox) -> None:
    r = docker_sandbox.run(
        "grep CapEff /proc/self/status; "
        "chown root /workspace && echo CHOWNED; "
        "mount -t tmpfs none /mnt && echo MOUNTED; "
        "touch /etc/x && echo WROTE_ETC; "
        "su -c id root </dev/null && echo ROOT"
    )
    assert "CapEff:\t0000000000000000" in r.stdout
    for marker in ("CHOWNED", "MOUNTED", "WROTE_ETC", "ROOT"):
        assert marker not in r.stdout
    assert docker_sandbox.python("import os; os.getuid(), os.geteuid()").stdout == "(1000, 1000)\n"


def test_timeout_kills_the_process_tree(docker_sandbox: DockerSandbox) -> None:
    sb = docker_sandbox
    r = sb.run("(sleep 300; echo child) & sleep 300; echo never", timeout=1)
    assert r.timed_out and r.limit == "timeout" and "never" not in r.stdout
    assert r.seconds < 5
    assert "sleep" not in sb.run("ps -u agent -o comm").stdout
    assert sb.run("echo still usable").stdout == "still usable\n"


def test_python_timeout_interrupts_and_keeps_state(docker_sandbox: DockerSandbox) -> None:
    sb = docker_sandbox
    sb.python("y = 5")
    r = sb.python("import time\nwhile True: time.sleep(0.1)", timeout=1)
    assert r.timed_out and "KeyboardInterrupt" in r.stderr
    assert sb.python("y").stdout == "5\n"
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(300)"
    r = sb.python(stubborn, timeout=1)
    assert r.timed_out and "restarted" in r.stderr
    assert sb.python("2 + 2").stdout == "4\n"


def test_output_is_capped(docker_sandbox: DockerSandbox) -> None:
    r = docker_sandbox.run("head -c 200000000 /dev/zero | tr '\\0' y; echo done >&2")
    assert r.truncated and len(r.stdout) == docker_sandbox.limits.max_output_bytes
    assert r.stderr == "done\n" and r.exit_code == 0
    r = docker_sandbox.python("print('z' * 10**6)")
    assert r.truncated and len(r.stdout) == docker_sandbox.limits.max_output_bytes


def test_fork_bomb_is_contained(docker_sandbox: DockerSandbox) -> None:
    sb = docker_sandbox
    r = sb.run(":(){ :|:& };:", timeout=10)
    assert r.limit in ("processes", "timeout"), r
    assert int(sb.run("ps -e --no-headers | wc -l").stdout) < 10  # survivors were killed
    assert sb.python("1 + 1").stdout == "2\n"


def test_memory_limits(docker_sandbox: DockerSandbox) -> None:
    sb = docker_sandbox
    sb.python("keep = 'me'")
    r = sb.python("a = bytearray(2 * 1024**3)")  # over the per-process cap
    assert r.limit == "memory" and "MemoryError" in r.stderr
    # Several processes each under the per-process cap, together over the container's.
    hog = (
        "python3 -c 'import time; a = bytearray(150 << 20); "
        'a[::4096] = b"x" * len(a[::4096]); time.sleep(2)\''
    )
    r = sb.run(f"for i in 1 2 3 4 5; do {hog} & done; wait", timeout=30)
    assert r.limit == "memory", r
    assert sb.python("keep").stdout == "'me'\n"  # the OOM killer took the hogs, not the worker


def test_cpu_and_file_size_limits(docker_sandbox: DockerSandbox) -> None:
    sb = docker_sandbox
    r = sb.run("python3 -c 'while True: pass'")
    assert r.limit == "cpu" and not r.timed_out
    r = sb.python("n = 0\nwhile True: n += 1")
    assert r.limit == "cpu" and sb.python("n > 0").stdout == "True\n"
    r = sb.run("head -c 10000000 /dev/zero > big")
    assert r.limit == "file_size"
    with pytest.raises(LimitExceeded) as info:
        sb.write_file("big2", b"x" * (6 << 20))
    assert info.value.limit == "file_size"


def test_kill_everything_leaves_the_sandbox_usable(docker_sandbox: DockerSandbox) -> None:
    sb = docker_sandbox
    sb.python("z = 3")
    r = sb.run("kill -9 -1; echo survived")  # every process the agent may signal
    r = sb.python("z")
    assert "restarted" in r.stderr and "NameError" in r.stderr
    assert sb.run("echo ok").stdout == "ok\n"


def test_dead_container_raises_sandbox_dead(docker_client: Any) -> None:
    sb = DockerSandbox(client=docker_client)
    try:
        docker_client.api.kill(sb.container_id)
        with pytest.raises(SandboxDead, match="container stopped"):
            sb.run("true")
        with pytest.raises(SandboxDead):
            sb.python("1")
    finally:
        sb.close()
    with pytest.raises(SandboxDead, match="closed"):
        sb.run("true")


def test_close_removes_containers_and_fork_images(docker_client: Any) -> None:
    before = labeled(docker_client)
    root = DockerSandbox(client=docker_client, limits=SandboxLimits())
    kids = [root.fork() for _ in range(2)]
    grandkid = kids[0].fork()
    during = labeled(docker_client)
    assert len(during[0] - before[0]) == 4 and len(during[1] - before[1]) == 3
    kids[0].close()  # its image and grandkid's image are still needed
    assert grandkid.run("true").ok and kids[1].run("true").ok
    root.close()
    root.close()  # idempotent
    assert kids[1].run("true").ok
    grandkid.close()
    kids[1].close()
    assert labeled(docker_client) == before


def test_garbage_collection_removes_the_container(docker_client: Any) -> None:
    before = labeled(docker_client)
    sb = DockerSandbox(client=docker_client)
    child = sb.fork()
    del sb, child
    gc.collect()
    assert labeled(docker_client) == before


def test_remove_stale_sweeps_dead_owners(docker_client: Any, docker_sandbox: DockerSandbox) -> None:
    dead_owner = f"{socket.gethostname()}:{2**22 + 7}"  # above pid_max's default, never alive
    docker_client.containers.create(
        docker_sandbox._image, labels={LABEL: "1", OWNER_LABEL: dead_owner}
    )
    assert len(labeled(docker_client, dead_owner)[0]) == 1
    assert remove_stale(docker_client) >= 1
    assert labeled(docker_client, dead_owner) == (set(), set())
    assert docker_sandbox.run("true").ok  # a live owner's sandbox is left alone


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_owner_interrupted_or_killed_leaves_nothing(docker_client: Any, sig: int) -> None:
    """Ctrl-C cleans up at exit; after a SIGKILL the next process's sweep does."""
    owner, theirs = start_owner("treegym.sandboxes.docker", "DockerSandbox")
    try:
        containers, images = labeled(docker_client, theirs)
        assert len(containers) == 2 and len(images) == 1
        owner.send_signal(sig)
        owner.wait(timeout=120)  # cleanup at exit removes containers and a committed image
    finally:
        owner.kill()
    if sig == signal.SIGKILL:
        assert labeled(docker_client, theirs) == (containers, images)  # nobody cleaned up...
        remove_stale(docker_client)  # ...until a later treegym process sweeps
    assert labeled(docker_client, theirs) == (set(), set())
