"""The processes that hold a local sandbox tree together, and what they set up once.

Stdlib only, imported by the worker script. The bootstrap enters the tree's namespaces
(as a host uid of the tree's own when it runs as root) and stays in the host's pid
namespace to take the tree down when the host goes; the tree's init builds the layer
store and reaps; the layer keeper alone keeps the store; the first worker, in a pid
namespace of its own branch, takes the hard per-process limits and the seccomp filter
(_seccomp.WORKER_DENIED) that every branch inherits.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import socket
import time
from typing import Any

import _keeper
import _linux as L
import _nest
import _seccomp
import _wire
import _world

NAMESPACES = (L.CLONE_NEWUSER | L.CLONE_NEWNS | L.CLONE_NEWPID | L.CLONE_NEWNET
              | L.CLONE_NEWIPC | L.CLONE_NEWUTS)
TREE_UIDS = 1 << 30  # host uids of local trees: this + the bootstrap's host pid


def set_limits(limits: dict[str, Any]) -> None:
    """Hard per-process caps that user code cannot raise (raising needs the host's root)."""
    mem = limits["memory_mb"] << 20
    size = limits["max_file_mb"] << 20
    tree = limits["max_tree_processes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_NPROC, (tree, tree))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def enter_namespaces(sandbox_uid: int | None, network: bool) -> None:
    """Own user, mount, pid, net, ipc and uts namespaces; one uid mapped, never host root.

    Run as root, the tree takes a host uid of its own (`sandbox_uid`, by default
    TREE_UIDS + this bootstrap's pid, unique among live trees): the kernel counts user
    namespaces, inotify instances and keys per uid, so a tree that exhausts its quotas
    exhausts only its own. A new network namespace has only a downed loopback: no route,
    no DNS, and nothing listening inside is reachable from the host. `network=True` keeps
    the host's.
    """
    if sandbox_uid is None:
        sandbox_uid = TREE_UIDS + os.getpid()
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(sandbox_uid, sandbox_uid, sandbox_uid)
        os.setresuid(sandbox_uid, sandbox_uid, sandbox_uid)
        L.prctl(L.PR_SET_DUMPABLE, 1)
    uid, gid = os.getuid(), os.getgid()
    L.unshare(NAMESPACES & ~L.CLONE_NEWNET if network else NAMESPACES)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{_world.UID} {uid} 1"),
                       ("gid_map", f"{_world.UID} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    socket.sethostname("sandbox")


def namespace_error(e: OSError) -> str:
    """ENOSPC means user namespaces are off (a quota of 0) or the quota is used up."""
    why = f"cannot create the sandbox namespaces: {e}"
    if e.errno != errno.ENOSPC:
        return why
    with open("/proc/sys/user/max_user_namespaces") as f:
        quota = int(f.read())
    if quota == 0:
        return f"{why}: user namespaces are disabled here (user.max_user_namespaces = 0)"
    return (f"{why}: uid {os.getuid()} has no user namespace left: its quota "
            f"(user.max_user_namespaces = {quota} here, or a lower one in an enclosing "
            "namespace) is used up by other processes of that uid; close them or raise it")


def await_host(lifeline: int, init: int) -> None:
    """The bootstrap: once the host closes the lifeline (or dies), take the tree down.

    Killing the tree's init makes the kernel kill every process in its pid namespace;
    waiting for it means all of them are gone when the host's `wait()` returns.
    """
    while os.read(lifeline, 1):
        pass
    os.kill(init, signal.SIGKILL)
    os.waitpid(init, 0)
    os._exit(0)


def reap_forever() -> None:
    """The tree's init: collect orphaned sandbox workers until the tree is torn down."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(3600)
        except InterruptedError:
            continue


def start(cfg: dict[str, Any], chan: socket.socket) -> tuple[socket.socket, int, str]:
    """From the host's bootstrap to the first branch's worker, which returns: its socket
    to the layer keeper, its pid namespace's depth, and the fork method the keeper chose.

        bootstrap (host pid ns) -> the tree's init (pid 1; builds the store, reaps)
            -> the layer keeper (_keeper.py)
            -> the first branch's init and worker (pids 1 and 2 of its own pid ns)
    """
    lifeline = cfg["lifeline_fd"]
    if os.read(lifeline, 1) != b"g":  # the host is done placing us (cgroup, credentials)
        os._exit(1)
    depth = _nest.level() + 1  # the tree's namespace
    try:
        enter_namespaces(cfg["sandbox_uid"], cfg["network"])
    except OSError as e:  # the host must hear why
        _wire.send(chan, {"error": namespace_error(e)})
        raise SystemExit(1) from None
    init = os.fork()
    if init:
        chan.close()
        await_host(lifeline, init)
    L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.close(lifeline)
    step = "cannot build the sandbox filesystem"
    try:
        ro_dirs = _world.build_store("/tmp", cfg["disk_mb"], cfg["network"])
        step = "cannot start the first branch"
        keeper, keeper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.fork() == 0:
            chan.close()
            keeper.close()
            _keeper.Keeper(ro_dirs, cfg["method"], cfg["squash_at"]).serve(keeper_end)
            os._exit(0)
        keeper_end.close()
        tree_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        pid, depth, init_ready = _nest.fork_branch(depth, tree_ns)
        if pid:
            chan.close()
            reap_forever()
        os.close(tree_ns)
        step = "cannot mount the sandbox root"
        os.setpgid(0, 0)
        L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)
        L.unshare(L.CLONE_NEWNS)
        root = _wire.ask(keeper, {"op": "root"})
        _keeper.enter(root.fds[0], _world.WORKDIR)
        set_limits(cfg["limits"])
        _seccomp.install(_seccomp.WORKER_DENIED)
        _nest.await_init(init_ready)
    except BaseException as e:  # noqa: B036 - the host must hear why
        _wire.send(chan, {"error": f"{step}: {e}"})
        os._exit(1)
    return keeper, depth, root.header["method"]
