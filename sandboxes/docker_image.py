"""Build the docker backend's base image on this machine.

No image registry is reachable where treegym runs, so the image is made from scratch:
debootstrap writes a minimal Debian rootfs, a non-root `agent` user and a `/workspace`
are added, and `docker import` turns the tarball into an image. The tarball is cached
under ~/.cache/treegym, so a second build (e.g. after `docker system prune`) takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ._files import WORKDIR
from .base import SandboxError

SUITE = "bookworm"
MIRROR = os.environ.get("TREEGYM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# python3 (not -minimal): agents reach for json, decimal, statistics...; pytest for BugFix.
PACKAGES = ("python3", "python3-pytest", "procps")
AGENT_UID = 1000
AGENT_USER = "agent"
BASE_LABEL = "treegym.base"
# Any change to how the rootfs is made must change the tag, or old images would be reused.
_RECIPE = f"{SUITE}|{','.join(PACKAGES)}|{AGENT_USER}:{AGENT_UID}|{WORKDIR}|v1"
RECIPE_ID = hashlib.sha256(_RECIPE.encode()).hexdigest()[:10]
DEFAULT_TAG = f"treegym/sandbox:{SUITE}-{RECIPE_ID}"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "treegym"


def docker_client():  # -> docker.DockerClient, untyped so `docker` stays an optional import
    """A client for the local engine, or a SandboxError that says how to get one."""
    try:
        import docker
    except ImportError as e:
        raise SandboxError(
            "the docker backend needs the docker SDK: pip install 'treegym[docker]'"
        ) from e
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure here means "no engine"
        raise SandboxError(
            "start dockerd: no Docker engine answered "
            f"({type(e).__name__}: {e}); run `.ci/start-docker.sh` or `sudo dockerd &`"
        ) from e
    return client


def rootfs_tarball(rebuild: bool = False) -> Path:
    """The cached rootfs tarball, made with debootstrap if it is not there yet."""
    tarball = CACHE_DIR / f"rootfs-{SUITE}-{RECIPE_ID}.tar"
    if tarball.exists() and not rebuild:
        return tarball
    if os.geteuid() != 0:
        raise SandboxError("building the sandbox image runs debootstrap, which needs root")
    _ensure_debootstrap()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            MIRROR,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log = root / "debootstrap" / "debootstrap.log"
            tail = (log.read_text() if log.exists() else proc.stderr or proc.stdout)[-2000:]
            raise SandboxError(
                f"debootstrap failed (exit {proc.returncode}) fetching from {MIRROR}; "
                f"set TREEGYM_DEBIAN_MIRROR to a reachable mirror. Last output:\n{tail}"
            )
        _customize(root)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], check=True
        )
        partial.rename(tarball)
    return tarball


def ensure_image(tag: str = DEFAULT_TAG, client=None, rebuild: bool = False) -> str:
    """Return `tag`, building and importing the image first if the engine lacks it."""
    client = client or docker_client()
    import docker.errors

    if not rebuild:
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
    tarball = rootfs_tarball(rebuild=rebuild)
    repository, _, version = tag.partition(":")
    changes = [
        f"USER {AGENT_USER}",
        f"WORKDIR {WORKDIR}",
        f"ENV HOME=/home/{AGENT_USER}",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["sleep", "infinity"]',
        f"LABEL {BASE_LABEL}={RECIPE_ID}",
    ]
    client.api.import_image(
        src=str(tarball), repository=repository, tag=version or "latest", changes=changes
    )
    client.images.get(tag)  # raises if the import silently produced nothing
    return tag


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    proc = subprocess.run(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap",
        shell=True,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not shutil.which("debootstrap"):
        raise SandboxError(f"could not install debootstrap with apt-get:\n{proc.stderr[-2000:]}")


def _customize(root: Path) -> None:
    """Add the agent user and workspace, and drop what only bloats every fork's base."""
    uid = AGENT_UID
    with open(root / "etc/passwd", "a") as f:
        f.write(f"{AGENT_USER}:x:{uid}:{uid}:treegym agent:/home/{AGENT_USER}:/bin/bash\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"{AGENT_USER}:x:{uid}:\n")
    with open(root / "etc/shadow", "a") as f:
        f.write(f"{AGENT_USER}:!:19000:0:99999:7:::\n")
    for d in (f"home/{AGENT_USER}", WORKDIR.lstrip("/")):
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chown(root / d, uid, uid)
        os.chmod(root / d, 0o755)
    for junk in (
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "var/cache/apt/archives",
        "var/lib/apt/lists",
    ):
        shutil.rmtree(root / junk, ignore_errors=True)
        (root / junk).mkdir(parents=True, exist_ok=True)
