"""The layer keeper: the one process of a tree that has the layer store mounted.

Workers run agent code (python() runs in the worker itself), so no worker may reach the
store: with it, a branch could read or rewrite a sibling's upper layer. The keeper holds
the store as its root and answers each worker on a socket of that worker's own. It
builds a branch's root there (an overlay of frozen layers plus a private upper, with
/usr, /dev... bound in), takes a detached copy of that mount tree (open_tree) and sends
the fd; the worker attaches it and pivots into it, never seeing the layers behind it.

A connection names its branch: the keeper keeps each branch's layers, so a worker can ask
only for roots of its own branch, and for its child's. Stdlib only, like the worker.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import subprocess
from typing import Any

import _linux as L
import _procs
import _wire
from _world import STORE, WORKDIR

_FLAGS = L.MS_NOSUID | L.MS_NODEV


_IDS = itertools.count()


def new_id(kind: tuple[str, ...]) -> str:
    """A fresh directory name under each of the store's `kind` directories."""
    ident = f"{next(_IDS):x}"
    for name in kind:
        os.mkdir(f"/{name}/{ident}")
    return ident


def copy_tree(src: str, dst: str) -> None:
    subprocess.run(["cp", "-a", f"{src}/.", f"{dst}/"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Branch:
    """One branch's layers: frozen lowers under a private upper (overlayfs), or a private
    copied directory (the copy method)."""

    def __init__(self, lowers: list[str], upper: str = "", copied: str = "") -> None:
        self.lowers, self.upper, self.copied = lowers, upper, copied


class Keeper:
    """Serves every worker of the tree: `root` once per branch, `fork` at each fork."""

    def __init__(self, ro_dirs: list[str], method: str, squash_at: int) -> None:
        self.ro_dirs, self.method, self.squash_at = ro_dirs, method, squash_at
        self.branches: dict[socket.socket, Branch] = {}

    def serve(self, first: socket.socket) -> None:
        """Answer until the last worker has hung up."""
        self.branches[first] = Branch(["skel"])
        while self.branches:
            for conn in select.select(list(self.branches), [], [])[0]:
                try:
                    msg = _wire.recv(conn)
                except (_wire.WireClosed, _wire.WireError, OSError):
                    del self.branches[conn]
                    conn.close()
                    continue
                fds: list[int] = []
                try:
                    reply = self.handle(conn, msg.header["op"], fds)
                except Exception as e:  # the worker reports it; the keeper goes on
                    reply = {"error": f"{type(e).__name__}: {e}"}
                try:
                    _wire.send(conn, reply, fds=tuple(fds))
                except OSError:
                    pass
                for fd in fds:
                    os.close(fd)

    def handle(self, conn: socket.socket, op: str, fds: list[int]) -> dict[str, Any]:
        branch = self.branches[conn]
        if op == "root":
            if branch.upper or branch.copied:
                raise ValueError("this branch has its root already")
            fds.append(self._first_root(branch))
            return {"method": self.method}
        if op == "count":
            return {"processes": _procs.count()}
        if op != "fork":
            raise ValueError(f"unknown op {op!r}")
        if self.method == "copy":
            child = Branch([], copied=new_id(("r",)))
            copy_tree(f"/r/{branch.copied}", f"/r/{child.copied}")
        else:
            if os.listdir(f"/l/{branch.upper}"):  # freeze what the child must share
                lowers = [branch.upper, *branch.lowers]
                branch.lowers = [self._squash(lowers)] if len(lowers) > self.squash_at else lowers
                branch.upper = new_id(("l", "w"))
                fds.append(self._build(branch))
            child = Branch(list(branch.lowers), upper=new_id(("l", "w")))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.branches[ours] = child
        fds.append(self._build(child))
        fds.append(theirs.detach())
        return {"reroot": len(fds) == 3}

    def _first_root(self, branch: Branch) -> int:
        if self.method == "overlayfs":
            try:
                branch.upper = new_id(("l", "w"))
                return self._build(branch)
            except OSError:
                self.method = "copy"
        branch.copied = new_id(("r",))
        copy_tree("/skel", f"/r/{branch.copied}")
        return self._build(branch)

    def _build(self, branch: Branch) -> int:
        """Mount a root for `branch`, and hand back a detached copy of it as an fd."""
        mnt = f"/m/{new_id(('m',))}"
        if self.method == "overlayfs":
            lowers = ":".join(_layer_path(x) for x in branch.lowers)
            L.mount("overlay", mnt, "overlay", _FLAGS,
                    f"lowerdir={lowers},upperdir=/l/{branch.upper},"
                    f"workdir=/w/{branch.upper},userxattr")
        else:
            L.mount(f"/r/{branch.copied}", mnt, None, L.MS_BIND)
        try:
            for name in (*self.ro_dirs, "dev"):
                L.mount(f"/{name}", f"{mnt}/{name}", None, L.MS_BIND | L.MS_REC)
            return L.clone_tree(mnt)
        finally:
            L.umount(mnt)
            os.rmdir(mnt)

    def _squash(self, lowers: list[str]) -> str:
        """Merge a deep stack into one layer before overlayfs' depth or option limits."""
        view = f"/m/{new_id(('m',))}"
        L.mount("overlay", view, "overlay", L.MS_RDONLY,
                f"lowerdir={':'.join(_layer_path(x) for x in lowers)},userxattr")
        try:
            merged = new_id(("l",))
            copy_tree(view, f"/l/{merged}")
        finally:
            L.umount(view)
        return merged


def _layer_path(layer: str) -> str:
    return "/skel" if layer == "skel" else f"/l/{layer}"


def enter(root_fd: int, cwd: str | None = None) -> None:
    """In a worker: swap this mount namespace's root for the tree `root_fd` (from the
    keeper), with a /proc of this process's pid namespace, and leave the old root; then
    go back to `cwd` (by default the current one) in the new root."""
    if cwd is None:
        try:
            cwd = os.getcwd()
        except OSError:  # the agent removed its own cwd
            cwd = WORKDIR
    try:
        L.attach_tree(root_fd, STORE)
    finally:
        os.close(root_fd)
    L.mount("proc", f"{STORE}/proc", "proc", _FLAGS | L.MS_NOEXEC)
    os.chdir(STORE)
    L.pivot_root(".", ".")
    L.umount(".")
    os.chdir("/")
    try:
        os.chdir(cwd)
    except OSError:  # the agent removed its own cwd
        os.chdir(WORKDIR)
