"""The default docker sandbox: one container per tree running the local forking worker.

Against the real engine that .ci/start-docker.sh starts; without one these skip, unless
TREEGYM_REQUIRE_DOCKER=1 makes a missing engine a failure.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from docker_helpers import start_owner

# The local backend's behaviour and hostile battery, run against the tree in a container
# through this module's `sb` fixture: the same worker must hold the same line.
from test_local_basic import (  # noqa: F401
    test_files,
    test_fork_copies_files_and_memory_then_diverges,
    test_paths_outside_workdir_are_refused,
    test_siblings_are_isolated,
)
from test_local_branches import (  # noqa: F401
    test_a_child_branch_reaches_nothing_of_its_parent,
    test_a_file_held_open_across_a_fork_is_each_branchs_own,
    test_a_parent_reaches_nothing_of_its_children,
    test_branches_share_no_hostname_ipc_abstract_socket_or_dev,
    test_branches_share_no_keyring,
    test_closing_a_parent_leaves_its_descendants_running,
    test_commands_reach_no_other_branch,
    test_pipes_sockets_memfds_shared_memory_and_proc_join_no_branches,
    test_python_in_a_branch_reaches_no_siblings_files_or_processes,
    test_python_sees_only_its_own_branch,
)
from test_local_hostile import (  # noqa: F401
    test_a_python_call_stopped_by_a_limit_takes_its_processes_along,
    test_fork_bomb_is_contained,
    test_gigabyte_of_output_is_capped,
    test_host_homes_and_secrets_are_invisible,
    test_host_paths_are_invisible,
    test_infinite_loops_time_out,
    test_killing_parents_and_init,
    test_layer_store_is_hidden_from_commands,
    test_listener_inside_is_unreachable_from_host,
    test_memory_bomb_is_contained,
    test_no_network_connect_or_dns,
    test_proc_shows_no_host_processes,
    test_python_that_ignores_the_timeout_is_killed,
    test_writes_outside_workdir_stay_inside,
)

import treegym
from treegym.sandboxes import LimitExceeded, SandboxError, SandboxLimits, open_sandbox
from treegym.sandboxes._docker_owned import OWNER_LABEL, owner_id, remove_stale
from treegym.sandboxes.docker_tree import DockerTreeSandbox


def ours(client: Any, owner: str | None = None) -> dict[str, set[str]]:
    """This process's tree containers and the host rendezvous dirs that exist now."""
    filters = {"label": f"{OWNER_LABEL}={owner or owner_id()}"}
    return {
        "containers": {c.id for c in client.containers.list(all=True, filters=filters)},
        "tmp": {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("treegym-docker")},
    }


@pytest.fixture
def sb(docker_client: Any) -> Iterator[DockerTreeSandbox]:
    """What the local backend's `sb` is, in a container; the local tests below take it."""
    before = ours(docker_client)
    box = DockerTreeSandbox(client=docker_client, timeout=10)
    yield box
    box.close()
    assert ours(docker_client) == before, "the tree left a container or a temp dir"


def test_open_sandbox_docker_is_a_tree_that_forks_memory(docker_client: Any) -> None:
    with open_sandbox("docker", client=docker_client, timeout=20) as sb:
        assert isinstance(sb, DockerTreeSandbox)
        caps = sb.capabilities
        assert caps.backend == "docker" and caps.forks_files and caps.forks_memory
        assert caps.fork_method == "overlayfs"
        assert {"container", "no-network", "user-ns", "pid-ns"} <= set(caps.isolation)


def test_deep_chains_and_many_siblings(sb: DockerTreeSandbox) -> None:
    sb.python("depth = 0")
    chain = [sb]
    for _ in range(64):
        chain.append(chain[-1].fork())
        chain[-1].python("depth += 1")
        chain[-1].write_file(f"level{len(chain) - 1}", "x")
    assert chain[-1].python("depth").stdout == "64\n"
    assert len([n for n in chain[-1].listdir(".") if n.startswith("level")]) == 64
    siblings = [sb.fork() for _ in range(200)]
    for i, sib in enumerate(siblings):
        sib.python(f"me = {i}")
    assert [s.python("me").stdout for s in siblings[::50]] == ["0\n", "50\n", "100\n", "150\n"]
    for sb in chain[1:] + siblings:
        sb.close()


def test_the_container_is_hardened(docker_client: Any, sb: DockerTreeSandbox) -> None:
    host = docker_client.api.inspect_container(sb.container_id)["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] > 0 and host["PidsLimit"] > 0
    user = docker_client.api.inspect_container(sb.container_id)["Config"]["User"]
    uid, gid = (int(part) for part in user.split(":"))
    assert uid == gid >= 1 << 30  # never root, never a real user: a uid of its own per tree
    # inside, commands hold no capabilities even in the tree's own user namespace
    assert "CapEff:\t0000000000000000" in sb.run("grep CapEff /proc/self/status").stdout


def test_the_container_side_is_out_of_reach(sb: DockerTreeSandbox) -> None:
    """The rendezvous socket, the worker's files and the container's /proc stay outside."""
    for hidden in ("/run/treegym", "/var/run/docker.sock", "/opt/treegym"):
        assert not sb.run(f"ls {hidden}").ok, hidden
    escape = sb.run("for p in /proc/[0-9]*; do ls -R $p/root/opt $p/root/run; done 2>&1")
    assert "_worker.py" not in escape.stdout and "host.sock" not in escape.stdout, escape
    for path in ("/proc/kcore", "/proc/sysrq-trigger", "/proc/sys/kernel/hostname"):
        poke = sb.run(f"head -c1 {path}; echo x > {path}")
        assert not poke.ok and ("Permission denied" in poke.stderr or "No such" in poke.stderr)
    assert sb.run("hostname").stdout.strip() == "sandbox"


def test_bad_limits_are_clear_errors(docker_client: Any) -> None:
    with pytest.raises(SandboxError, match="memory_mb"):
        DockerTreeSandbox(client=docker_client, limits={"memory_mb": "lots"})
    with pytest.raises(SandboxError, match="fork_method"):
        DockerTreeSandbox(client=docker_client, fork_method="teleport")
    assert ours(docker_client)["tmp"] == set()


def test_pycalc_on_docker_forks_the_interpreter(docker_client: Any) -> None:
    env = treegym.make("treegym/PyCalc-v0", sandbox="docker", kinds=["arithmetic"])
    try:
        env.reset(seed=0)
        call = '<tool_call>{{"name": "python", "arguments": {{"code": "{}"}}}}</tool_call>'
        env.step(call.format("x = 41"))
        child = env.fork()
        try:
            env.step(call.format("x += 1"))
            obs_child, *_ = child.step(call.format("print(x)"))
            obs_parent, *_ = env.step(call.format("print(x)"))
            assert (obs_child, obs_parent) == ("41", "42")
        finally:
            child.close()
    finally:
        env.close()


def test_garbage_collection_leaves_nothing(docker_client: Any) -> None:
    before = ours(docker_client)
    sb = DockerTreeSandbox(client=docker_client, limits=SandboxLimits(timeout=10))
    child = sb.fork()
    assert child.run("true").ok
    del sb, child
    gc.collect()
    assert ours(docker_client) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_owner_interrupted_or_killed_leaves_nothing(docker_client: Any, sig: int) -> None:
    """Ctrl-C closes the tree at exit. After a SIGKILL the lifeline closes with the owner,
    so the tree's processes end at once; the stopped container goes at the next sweep."""
    owner, theirs = start_owner("treegym.sandboxes.docker_tree", "DockerTreeSandbox")
    try:
        (container,) = ours(docker_client, theirs)["containers"]
        owner.send_signal(sig)
        owner.wait(timeout=60)
    finally:
        owner.kill()
    if sig == signal.SIGKILL:
        state = docker_client.api.wait(container, timeout=30)  # the tree ended by itself
        assert state["StatusCode"] == 0
        remove_stale(docker_client)
    assert ours(docker_client, theirs)["containers"] == set()
    assert ours(docker_client)["tmp"] == set()


def test_a_missing_image_says_how_to_build_one(docker_client: Any) -> None:
    before = ours(docker_client)
    with pytest.raises(SandboxError, match="build-image"):
        DockerTreeSandbox(client=docker_client, image="treegym/no-such-image:missing")
    assert ours(docker_client) == before


def test_limits_are_configurable_and_named(docker_client: Any) -> None:
    with DockerTreeSandbox(client=docker_client, max_file_mb=1, cpu_seconds=1,
                           max_output_bytes=100) as box:
        assert box.run("head -c 2M /dev/zero > big").limit == "file_size"
        with pytest.raises(LimitExceeded) as info:
            box.write_file("big2", b"x" * (2 << 20))
        assert info.value.limit == "file_size"
        assert box.run("python3 -c 'while 1: pass'").limit == "cpu"
        assert box.python("while True: pass").limit == "cpu"
        r = box.run("seq 1000")
        assert r.truncated and len(r.stdout) == 100
        assert box.python("print('ok')").stdout == "ok\n"


def test_build_image_command_makes_an_image_a_tree_runs_on(docker_client: Any) -> None:
    tag = f"treegym/sandbox:cli-test-{os.getpid()}"
    treegym_cli = os.path.join(os.path.dirname(sys.executable), "treegym")
    done = subprocess.run([treegym_cli, "sandbox", "build-image", "--tag", tag],
                          capture_output=True, text=True, timeout=600)
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(tag)
        with DockerTreeSandbox(client=docker_client, image=tag) as box:
            assert box.python("import sys; sys.version_info[0]").stdout == "3\n"
    finally:
        docker_client.api.remove_image(tag, force=True)
