"""Docker sandboxes that fork in milliseconds: the local forking worker, inside a container.

One container holds one tree of sandboxes. It runs `_worker.py`, the same stdlib-only
worker as the local backend, so a fork is an `os.fork()` of the branch's worker with a
fresh overlayfs upper layer: files *and* interpreter memory are copied, and the cost
does not grow with the workspace. Branches are isolated from one another by the worker's
own user, mount, pid, ipc, uts and net namespaces; the container is the outer wall
(no network, no capabilities, no new privileges, memory and pids cgroups).

The host and the worker speak the local backend's protocol over unix sockets: the host
listens in a private directory bind-mounted into the container, the container's first
process dials it twice (the root branch's channel, then the tree's lifeline) and execs
the worker. Each later branch gets its own socketpair, whose far end travels to the
worker with SCM_RIGHTS, exactly as with the local backend.

Nesting namespaces needs two departures from Docker's defaults, both kept narrow:
- a seccomp profile that allows `unshare`/`clone` of namespaces (Docker's default
  allows them only with CAP_SYS_ADMIN) and still refuses the kernel's riskier calls;
- no masked /proc paths, because the kernel refuses a fresh /proc for the tree's pid
  namespace while parts of the container's /proc are covered. Inside the tree no
  process is root outside its own user namespace, so the unmasked files stay unreadable.
Where the engine enforces AppArmor, its default profile forbids mount(2), so the tree's
container also runs without it (untested here: this machine's engine has no AppArmor).
"""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
import shutil
import socket
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from ._docker_owned import LABEL, OWNER_LABEL, owner_id, sweep_once
from ._handles import _Tree
from ._launch import WORKER_ENV, Launcher, Started, TreeProfile, TreeSpec
from .base import SandboxError, SandboxLimits
from .docker_image import docker_client, ensure_image
from .local import LocalSandbox

WORKER_FILES = ("_worker.py", "_world.py", "_wire.py", "_linux.py", "_procs.py", "_files.py",
                "_seccomp.py", "_commands.py", "_tree.py", "_keeper.py", "_nest.py", "_inherit.py",
                "_cell.py", "_reaper.py")
# Host uids of docker trees, one drawn at random per container: its pids are the
# container's own, so the local rule (a base plus the bootstrap's pid) would collide.
DOCKER_TREE_UIDS = (1 << 30) + (1 << 23)
WORKER_DIR = "/opt/treegym"
RENDEZVOUS = "/run/treegym"
SOCKET_NAME = "host.sock"
# Docker-init and the worker's bootstrap, beyond the tree's own processes.
HOUSEKEEPING_PIDS = 8
# Dials the host twice (channel, lifeline) and becomes the worker, which waits for the
# host's go byte on the lifeline before it starts.
BOOT = f"""
import json, os, socket, sys
def dial():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect({RENDEZVOUS + "/" + SOCKET_NAME!r})
    return s
chan, life = dial(), dial()
cfg = json.loads(sys.argv[1])
cfg["chan_fd"], cfg["lifeline_fd"] = chan.detach(), life.detach()
os.set_inheritable(cfg["chan_fd"], True)
os.set_inheritable(cfg["lifeline_fd"], True)
worker = {WORKER_DIR + "/_worker.py"!r}
os.execv(sys.executable, [sys.executable, "-I", "-S", worker, json.dumps(cfg)])
"""
# Everything else is allowed, as the local backend allows it on the host; these are the
# calls that reach kernel-wide state or have a history of privilege escalation.
DENIED_SYSCALLS = (
    "acct", "add_key", "adjtimex", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "fanotify_init", "finit_module", "get_kernel_syms", "init_module",
    "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "name_to_handle_at",
    "nfsservctl", "open_by_handle_at", "perf_event_open", "process_vm_readv",
    "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot", "request_key",
    "settimeofday", "swapoff", "swapon", "syslog", "uselib", "userfaultfd", "vm86",
    "vm86old",
)
SECCOMP_PROFILE = json.dumps({
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
})


class DockerTreeSandbox(LocalSandbox):
    """A sandbox whose tree lives in one hardened container and forks like a local one.

    Options as for `LocalSandbox` (`fork_method` "overlayfs" or "copy", `disk_mb`,
    `squash_every`, `max_tree_processes`, limits and their keyword overrides), plus
    `image`, `client`, `tree_memory_mb` (the container's memory cgroup, shared by every
    branch of the tree and by its in-memory layer store) and `tree_cpus` (its CPU cores).
    Only where the first worker runs differs: `ContainerLauncher`.
    """

    def __init__(self, limits: SandboxLimits | dict[str, Any] | None = None, *,
                 image: str | None = None, client: Any = None, start_timeout: float = 60.0,
                 launcher: Launcher | None = None, **options: Any) -> None:
        super().__init__(limits, start_timeout=start_timeout,
                         launcher=launcher or ContainerLauncher(image, client, start_timeout),
                         **options)

    @property
    def container_id(self) -> str | None:
        return self._profile.container_id


class ContainerLauncher:
    """A tree in a container of its own, as host uid drawn at random: the kernel counts
    user namespaces, inotify instances and keys per uid, so each tree's quotas are its own."""

    def __init__(self, image: str | None, client: Any, start_timeout: float) -> None:
        self.client = client or docker_client()
        sweep_once(self.client)
        self.image = image or ensure_image(client=self.client)
        self.start_timeout = start_timeout

    def start(self, spec: TreeSpec) -> Started:
        uid = DOCKER_TREE_UIDS + secrets.randbelow(1 << 28)
        config = spec.worker_config(uid)
        client = self.client
        rendezvous = Path(tempfile.mkdtemp(prefix="treegym-docker-"))
        container_id: str | None = None
        chan = life = None
        try:
            listener = _listen(rendezvous / SOCKET_NAME)
            container_id = _start_container(client, self.image, spec, rendezvous, config, uid)
            with listener:
                listener.settimeout(self.start_timeout)
                chan = _accept(listener, client, container_id)
                chan.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
                life = _accept(listener, client, container_id)
            shutil.rmtree(rendezvous)
            life.sendall(b"g")
        except BaseException:
            for sock in (chan, life):
                if sock is not None:
                    sock.close()
            _remove(client, container_id, rendezvous)
            raise
        walls = ["container", "no-capabilities", "no-new-privileges", "memory-cgroup",
                 "pids-cgroup", "seccomp", *([] if spec.limits.network else ["no-network"])]
        profile = TreeProfile("docker", walls,
                              ["uid-per-tree"] + (["cpu-cgroup"] if spec.tree_cpus else []),
                              "the container's memory cgroup", container_id)
        return Started(_Tree(functools.partial(_stop_tree, client, container_id, life)), chan,
                       profile)


def _listen(path: Path) -> socket.socket:
    """The rendezvous socket, reachable by the container's unprivileged first process."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o666)
        listener.listen(2)
    except BaseException:
        listener.close()
        raise
    return listener


def _start_container(client: Any, image: str, spec: TreeSpec, rendezvous: Path,
                     config: dict[str, Any], uid: int) -> str:
    """Create the tree's container, copy the worker in, and start it, as host uid `uid`."""
    api = client.api
    limits, tree_cpus = spec.limits, spec.tree_cpus
    memory = f"{spec.tree_memory_mb}m"
    fsize = limits.max_file_mb << 20
    host_config = api.create_host_config(
        init=True,
        network_mode="bridge" if limits.network else "none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges", f"seccomp={SECCOMP_PROFILE}", *_apparmor(client)],
        mem_limit=memory,
        memswap_limit=memory,
        pids_limit=spec.max_tree_processes + HOUSEKEEPING_PIDS,
        nano_cpus=int(tree_cpus * 1e9) if tree_cpus else None,
        ulimits=[{"Name": "fsize", "Soft": fsize, "Hard": fsize},
                 {"Name": "core", "Soft": 0, "Hard": 0}],
        binds={str(rendezvous): {"bind": RENDEZVOUS, "mode": "rw"}},
    )
    host_config["MaskedPaths"] = []
    host_config["ReadonlyPaths"] = []
    import docker.errors

    try:
        api.inspect_image(image)
    except docker.errors.ImageNotFound:
        raise SandboxError(f"no docker image {image!r} here; build the default one with "
                           "`treegym sandbox build-image`, or pass an image that has python3"
                           ) from None
    container_id = api.create_container(
        image,
        command=["python3", "-I", "-S", "-c", BOOT, json.dumps(config)],
        environment=WORKER_ENV,
        user=f"{uid}:{uid}",
        working_dir="/",
        hostname="sandbox",
        network_disabled=not limits.network,
        labels={LABEL: "tree", OWNER_LABEL: owner_id()},
        host_config=host_config,
    )["Id"]
    try:
        api.put_archive(container_id, "/", _worker_archive())
        api.start(container_id)
    except BaseException:
        _remove(client, container_id, None)
        raise
    return container_id


def _apparmor(client: Any) -> list[str]:
    """Where the engine enforces AppArmor, its docker-default profile forbids mount(2),
    which the worker needs inside the tree's own namespaces; there the container runs
    unconfined by AppArmor and the namespaces, seccomp and cgroups above still hold."""
    enforced = any(o.startswith("name=apparmor") for o in client.info().get("SecurityOptions", []))
    return ["apparmor=unconfined"] if enforced else []


@functools.cache
def _worker_archive() -> bytes:
    """The worker's stdlib-only files (WORKER_FILES), as a tar for `put_archive`."""
    here = Path(__file__).parent
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo(WORKER_DIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name in WORKER_FILES:
            data = (here / name).read_bytes()
            info = tarfile.TarInfo(f"{WORKER_DIR.lstrip('/')}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _accept(listener: socket.socket, client: Any, container_id: str) -> socket.socket:
    try:
        sock, _ = listener.accept()
    except TimeoutError:
        raise SandboxError(
            "the docker tree's worker did not connect in time: "
            + _container_story(client, container_id)) from None
    sock.settimeout(None)
    return sock


def _container_story(client: Any, container_id: str) -> str:
    """What the container did, for an error message: its state and its last log lines."""
    try:
        state = client.api.inspect_container(container_id)["State"]
        logs = client.api.logs(container_id, tail=20).decode("utf-8", "replace").strip()
    except Exception as e:  # noqa: BLE001 - this only decorates an error already raised
        return f"the container could not be inspected ({e})"
    story = f"container {state.get('Status')} (exit code {state.get('ExitCode')})"
    return f"{story}; its output: {logs[-800:]}" if logs else story


def _stop_tree(client: Any, container_id: str, life: socket.socket) -> None:
    """Closing the lifeline makes the worker's bootstrap kill the tree; the container goes."""
    life.close()
    _remove(client, container_id, None)


def _remove(client: Any, container_id: str | None, rendezvous: Path | None) -> None:
    import docker.errors

    if container_id is not None:
        try:
            client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
    if rendezvous is not None:
        shutil.rmtree(rendezvous, ignore_errors=True)


__all__ = ["DockerTreeSandbox"]
