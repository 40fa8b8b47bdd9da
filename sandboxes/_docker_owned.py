"""What treegym owns in the docker engine, and how it is freed.

Containers and committed fork images carry `LABEL`, and `OWNER_LABEL` names the host
process that made them, so a later process can remove what a killed one left behind.
Shared by the commit backend (docker.py) and the tree backend (docker_tree.py).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

LABEL = "treegym.sandbox"
OWNER_LABEL = "treegym.owner"

_stale_swept = False
_stale_lock = threading.Lock()


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ImageLedger:
    """Which committed images a family of forked sandboxes still needs.

    Docker refuses to delete an image that a container (even a stopped one) or a child
    image still uses, so an image is removed only once neither is left; removing it may
    then free its parent.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._parent: dict[str, str | None] = {}
        self._users: dict[str, set[str]] = {}
        self._children: dict[str, set[str]] = {}

    def add(self, image: str, parent: str) -> None:
        with self._lock:
            owned_parent = parent if parent in self._parent else None
            self._parent[image] = owned_parent
            self._users[image] = set()
            self._children[image] = set()
            if owned_parent is not None:
                self._children[owned_parent].add(image)

    def use(self, image: str, container: str) -> None:
        with self._lock:
            if image in self._users:
                self._users[image].add(container)

    def release(self, image: str, container: str | None) -> None:
        """Drop one use of `image` and delete every image of ours that nothing needs now."""
        import docker.errors

        with self._lock:
            if image not in self._users:
                return
            self._users[image].discard(container or "")
            while image is not None and not self._users[image] and not self._children[image]:
                try:
                    self._client.api.remove_image(image, force=True)
                except docker.errors.NotFound:
                    pass
                parent = self._parent.pop(image)
                del self._users[image], self._children[image]
                if parent is not None:
                    self._children[parent].discard(image)
                image = parent


def cleanup(client: Any, container_id: str, conn: list, ledger: ImageLedger, image: str) -> None:
    """Free what one sandbox holds; runs once, from close() or when it is collected."""
    import docker.errors

    for sock in conn:
        try:
            sock.close()
        except OSError:
            pass
    try:
        client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    ledger.release(image, container_id)


def remove_stale(client: Any) -> int:
    """Remove containers and fork images left by treegym processes on this host that died
    without closing them (SIGKILL, a crashed interpreter); return how many went."""
    import docker.errors

    host = socket.gethostname()
    removed = 0

    def dead_owner(labels: dict[str, str]) -> bool:
        owner_host, _, pid = labels.get(OWNER_LABEL, "").rpartition(":")
        if owner_host != host or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    for c in client.containers.list(all=True, filters={"label": LABEL}):
        if dead_owner(c.labels):
            try:
                c.remove(force=True)
                removed += 1
            except docker.errors.NotFound:
                pass
    images = client.images.list(filters={"label": LABEL})
    # Newest first, so children go before the images they were committed from.
    images.sort(key=lambda i: i.attrs.get("Created", ""), reverse=True)
    for img in images:
        if dead_owner(img.labels):
            try:
                client.api.remove_image(img.id, force=True)
                removed += 1
            except (docker.errors.NotFound, docker.errors.APIError):
                pass
    return removed


def sweep_once(client: Any) -> None:
    global _stale_swept
    with _stale_lock:
        if not _stale_swept:
            _stale_swept = True
            remove_stale(client)
