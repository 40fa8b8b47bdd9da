"""The layer store of a tree's root filesystems, built once per tree.

All layers live in one tmpfs (the *store*) created inside the tree's own mount
namespace, so nothing is ever written to the host's disk and the whole store vanishes
with the tree's last process. Only the layer keeper (_keeper.py) has it mounted; no
worker, command or branch init can reach it.

Root layout: an overlay of frozen layers plus one private upper layer, with read-only
binds of the host's /usr (and /bin, /lib... where they are real directories), a
handful of device nodes, and a /proc of the branch's own pid namespace. A fork freezes
the current upper as a new lower (a mounted lower must never change), so parent and
child each get a fresh upper over identical lowers. Where overlayfs is unavailable each
root is a plain directory and a fork copies it (`cp -a`), which is slower but needs only
bind mounts. `STORE` is the empty directory every root has, where a new root is
attached before the worker pivots into it.
"""

from __future__ import annotations

import os
import shutil

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
    for d in ("skel", "l", "w", "m", "r", "dev", "proc", STORE.lstrip("/")):
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
    # Read-only: every branch's root binds this one /dev, so a file made in it would be a
    # channel between branches. Its nodes are mounts of their own and stay writable.
    L.mount(f"{s}/dev", f"{s}/dev", None, L.MS_BIND | L.MS_REC)
    L.mount(None, f"{s}/dev", None,
            L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY | L.MS_NOSUID | L.MS_NODEV)
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
