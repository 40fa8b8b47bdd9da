"""Ray token authentication for joining a cluster by address.

Ray 2.52+ clusters may require a token. `ray start --head` turns it on when a token
exists (`~/.ray/auth_token`, written by `ray get-auth-token --generate` or by any local
`ray.init()`), but a client that names an address only sends one when
`RAY_AUTH_MODE=token` is set, and a client in token mode breaks actors on a cluster
without authentication (they are cancelled before they run). So treegym asks the
cluster's GCS first, with one gRPC call that costs milliseconds, whether it wants a token
and whether the one found here is right, and opts in for the session only if so. A
missing or refused token is then one clear line at once, not Ray's 20 s connect timeout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Literal

from ..errors import ClusterError

MODE = "RAY_AUTH_MODE"
HOW_TO_PASS = ("pass the cluster's token as RAY_AUTH_TOKEN=TOKEN or RAY_AUTH_TOKEN_PATH=FILE "
               "(`ray get-auth-token` on the head node prints it)")
Answer = Literal["open", "accepted", "refused", "unknown"]


def find_token() -> tuple[str, str] | None:
    """(where, token) for this client, in Ray's own order of precedence, or None."""
    value = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if value:
        return "RAY_AUTH_TOKEN", value
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named).expanduser() if named else Path.home() / ".ray" / "auth_token"
    if not path.is_file():
        return None
    where = f"RAY_AUTH_TOKEN_PATH={named}" if named else str(path)
    return where, path.read_text(encoding="utf-8").strip()


def ask_cluster(address: str, token: str | None) -> Answer:
    """Whether the GCS at HOST:PORT lets a client in without a token ("open"), with
    `token` ("accepted"), or not ("refused"); "unknown" if it can't be asked."""
    if not re.fullmatch(r"[\w.\-]+:\d+|\[[0-9a-fA-F:]+\]:\d+", address):
        return "unknown"
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:
        return "unknown"
    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        for sent in (None, token):
            metadata = [("authorization", f"Bearer {sent}")] if sent else None
            try:
                stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=5,
                                  metadata=metadata)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
                    return "unknown"
                if sent or not token:
                    return "refused"
                continue
            return "accepted" if sent else "open"
    return "refused"


def _reload_config(ray: ModuleType) -> None:
    """Make a Ray that already read its config see a changed RAY_AUTH_MODE."""
    config = getattr(getattr(ray, "_raylet", None), "Config", None)
    if config is not None and hasattr(config, "initialize"):
        config.initialize("")


@contextmanager
def token_auth(ray: ModuleType, address: str) -> Iterator[str | None]:
    """Token mode for the session, if the cluster at `address` wants the token found here;
    yields where that token came from (None: no token is sent, or the user set the mode)."""
    if MODE in os.environ or address == "auto":  # the user's choice, or Ray's own lookup
        yield None
        return
    found = find_token()
    answer = ask_cluster(address, found[1] if found else None)
    if answer == "refused":
        if found is None:
            raise ClusterError(f"the Ray cluster at {address!r} uses token authentication "
                               f"and no token was found here: {HOW_TO_PASS}")
        raise ClusterError(f"the Ray cluster at {address!r} refused the token from "
                           f"{found[0]}: {HOW_TO_PASS}")
    if answer != "accepted" or found is None:
        yield None
        return
    os.environ[MODE] = "token"
    _reload_config(ray)
    try:
        yield found[0]
    finally:
        os.environ.pop(MODE, None)
        _reload_config(ray)
