"""The sandbox's root filesystem: built once per tree, re-rooted on every fork.

All layers live in one tmpfs (the *store*) created inside the tree's own mount
namespace, so nothing is ever written to the host's disk and the whole store vanishes
with the tree's last process. Inside every sandbox root the store is reachable at
`/.tg`; shell commands run with it unmounted.

Root layout: an overlay of frozen layers plus one private upper layer, with read-only
binds of the host's /usr (and /bin, /lib... where they are real directories), /proc of
the tree's pid namespace and a handful of device nodes. A fork freezes the current
upper as a new lower (a mounted lower must never change), so parent and child each get
a fresh upper over identical lowers. Where overlayfs is unavailable each root is a plain
directory and a fork copies it (`cp -a`), which is slower but needs only bind mounts.
"""

from __future__ import annotations

import os
import shutil
import subprocess

if __package__:
    from . import _linux as L
    from ._files import HOME, WORKDIR
else:  # loaded by the standalone worker script
    import _linux as L  # type: ignore[no-redef]
    from _files import HOME, WORKDIR  # type: ignore[no-redef]

STORE = "/.tg"
UID = 1000

_LIB_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_DEV_NODES = ("null", "zero", "full", "random", "urandom")
_ETC_COPY = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "os-release",
             "debian_version", "bash.bashrc", "profile", "inputrc", "mime.types", "localtime")
_ETC_FILES = {
    "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
              f"agent:x:{UID}:{UID}:agent:{HOME}:/bin/bash\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": f"root:x:0:\nagent:x:{UID}:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    "hostname": "sandbox\n",
    "resolv.conf": "",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}


def build_store(mountpoint: str, disk_mb: int, network: bool) -> list[str]:
    """Mount the tree's store and fill its skeleton; return the read-only bind dirs.

    Runs once per tree in its init (pid 1 of the tree's pid namespace), while the host's
    root is still visible: the kernel mounts a new /proc only while a full one is
    visible. Then it pivots into the store, so the host's filesystem is gone from this
    mount namespace for good.
    """
    L.mount(None, "/", None, L.MS_REC | L.MS_PRIVATE)
    L.mount("tgstore", mountpoint, "tmpfs", L.MS_NOSUID | L.MS_NODEV,
            f"size={disk_mb}m,mode=0755")
    s = mountpoint
    for d in ("skel", "l", "w", "m", "r", "dev", "proc"):
        os.mkdir(f"{s}/{d}")
    ro_dirs = ["usr"]
    for name in _LIB_DIRS:
        host = f"/{name}"
        if os.path.islink(host):  # merged /usr: the store itself must run binaries too
            os.symlink(os.readlink(host), f"{s}/skel/{name}")
            os.symlink(os.readlink(host), f"{s}/{name}")
        elif os.path.isdir(host):
            ro_dirs.append(name)
    for name in ro_dirs:
        os.mkdir(f"{s}/{name}")
        os.mkdir(f"{s}/skel/{name}")
        L.mount(f"/{name}", f"{s}/{name}", None, L.MS_BIND | L.MS_REC)
        L.mount(None, f"{s}/{name}", None,
                L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY | L.MS_NOSUID | L.MS_NODEV)
    for node in _DEV_NODES:
        open(f"{s}/dev/{node}", "w").close()
        L.mount(f"/dev/{node}", f"{s}/dev/{node}", None, L.MS_BIND)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"{s}/dev/{name}")
    os.symlink("/proc/self/fd", f"{s}/dev/fd")
    L.mount("proc", f"{s}/proc", "proc", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)
    _fill_skeleton(f"{s}/skel")
    if network:
        shutil.copyfile("/etc/resolv.conf", f"{s}/skel/etc/resolv.conf")
    _pivot_into(s)
    return ro_dirs


def _fill_skeleton(skel: str) -> None:
    for d in ("etc", "home", "tmp", "proc", "dev", "root", "var", "var/tmp", "opt", "mnt",
              "run", STORE.lstrip("/"), HOME.lstrip("/"), WORKDIR.lstrip("/")):
        os.makedirs(f"{skel}/{d}", exist_ok=True)
    os.chmod(f"{skel}/tmp", 0o1777)
    os.chmod(f"{skel}/var/tmp", 0o1777)
    for name, text in _ETC_FILES.items():
        with open(f"{skel}/etc/{name}", "w") as f:
            f.write(text)
    for name in _ETC_COPY:
        src = f"/etc/{name}"
        dst = f"{skel}/etc/{name}"
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True)
        elif os.path.isfile(src):
            shutil.copyfile(src, dst)


def _pivot_into(path: str) -> None:
    os.chdir(path)
    L.pivot_root(".", ".")
    L.umount(".")
    os.chdir("/")


def _new_id(prefix: str, kind: tuple[str, ...]) -> str:
    n = 0
    while True:
        ident = f"{os.getpid():x}.{n:x}"
        try:
            os.mkdir(f"{prefix}/{kind[0]}/{ident}")
        except FileExistsError:
            n += 1
            continue
        for extra in kind[1:]:
            os.mkdir(f"{prefix}/{extra}/{ident}")
        return ident


class World:
    """One sandbox's view of the store: which layers make its root, and how to re-root."""

    def __init__(self, ro_dirs: list[str], method: str, squash_at: int) -> None:
        self.ro_dirs = ro_dirs
        self.method = method
        self.squash_at = squash_at
        self.lowers: list[str] = ["skel"]
        self.upper = ""
        self.root = ""
        self.store_prefix = ""

    # -- entering a root ------------------------------------------------------------
    def enter_first(self) -> None:
        """Mount this process's first root; tries overlayfs, else falls back to copying."""
        if self.method == "overlayfs":
            try:
                self.upper = _new_id("", ("l", "w"))
                self._enter()
                return
            except OSError:
                self.method = "copy"
        self.root = _new_id("", ("r",))
        _copy_tree("/skel", f"/r/{self.root}")
        self._enter()

    def _enter(self) -> None:
        """Swap this mount namespace's root for a freshly mounted one.

        The old root is left first (pivot into the store), so that its overlay is gone
        before its upper layer is mounted again as a lower: overlayfs warns, and its
        behaviour is undefined, when one directory is both at once.
        """
        cwd = _getcwd() if self.store_prefix else WORKDIR
        if self.store_prefix:
            _pivot_into(self.store_prefix)
        store = L.clone_tree("/")  # the store with its /usr, /dev and /proc mounts
        try:
            mnt = f"/m/{_new_id('', ('m',))}"
            if self.method == "overlayfs":
                lowers = ":".join(_layer_path("", x) for x in self.lowers)
                L.mount("overlay", mnt, "overlay", L.MS_NOSUID | L.MS_NODEV,
                        f"lowerdir={lowers},upperdir=/l/{self.upper},"
                        f"workdir=/w/{self.upper},userxattr")
            else:
                L.mount(f"/r/{self.root}", mnt, None, L.MS_BIND)
            L.attach_tree(store, f"{mnt}{STORE}")
        finally:
            os.close(store)
        for name in (*self.ro_dirs, "dev", "proc"):
            L.mount(f"/{name}", f"{mnt}/{name}", None, L.MS_BIND | L.MS_REC)
        _pivot_into(mnt)
        self.store_prefix = STORE
        try:
            os.chdir(cwd)
        except OSError:
            os.chdir(WORKDIR)

    # -- forking --------------------------------------------------------------------
    def before_fork(self) -> None:
        """In the parent: freeze what the child must share, so no mounted lower changes."""
        if self.method != "overlayfs":
            return
        if not os.listdir(f"{STORE}/l/{self.upper}"):
            return  # nothing written since the last freeze: share the same lowers
        lowers = [self.upper, *self.lowers]
        if len(lowers) > self.squash_at:
            lowers = [self._squash(lowers)]
        self.lowers = lowers
        self.upper = _new_id(STORE, ("l", "w"))
        self._enter()

    def copy_for_child(self) -> str:
        """In the copy method the parent copies its root before forking (it may change after)."""
        ident = _new_id(STORE, ("r",))
        _copy_tree(f"{STORE}/r/{self.root}", f"{STORE}/r/{ident}")
        return ident

    def enter_child(self, copied_root: str | None) -> None:
        """In the child, after `unshare(CLONE_NEWNS)`: mount its own private root."""
        if self.method == "overlayfs":
            self.upper = _new_id(STORE, ("l", "w"))
        else:
            assert copied_root is not None
            self.root = copied_root
        self._enter()

    def _squash(self, lowers: list[str]) -> str:
        """Merge a deep stack into one layer before overlayfs' depth or option limits."""
        view = _new_id(STORE, ("m",))
        paths = ":".join(_layer_path(STORE, x) for x in lowers)
        L.mount("overlay", f"{STORE}/m/{view}", "overlay", L.MS_RDONLY,
                f"lowerdir={paths},userxattr")
        try:
            merged = _new_id(STORE, ("l",))
            _copy_tree(f"{STORE}/m/{view}", f"{STORE}/l/{merged}")
        finally:
            L.umount(f"{STORE}/m/{view}")
        return merged



def _layer_path(prefix: str, layer: str) -> str:
    return f"{prefix}/{layer}" if layer == "skel" else f"{prefix}/l/{layer}"


def _getcwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the user's code removed its own cwd
        return WORKDIR


def _copy_tree(src: str, dst: str) -> None:
    subprocess.run(["cp", "-a", f"{src}/.", f"{dst}/"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
