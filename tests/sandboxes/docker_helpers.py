"""What the docker tests share: a separate owner process to interrupt or kill."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

_OWNER_SCRIPT = """
import os, time
from {module} import {name}
sb = {name}()
child = sb.fork()
print(os.getpid(), flush=True)
time.sleep(120)
"""


def start_owner(module: str, name: str) -> tuple[subprocess.Popen[str], str]:
    """A process that opens sandbox class `module.name`, forks it once and waits, as a
    user's script would; returns it with the owner label its containers carry."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT.format(module=module, name=name)],
        stdout=subprocess.PIPE, text=True,
        # a shell that ran us in the background made SIGINT ignored, and children inherit
        # that; a user's Ctrl-C reaches a foreground process with the default action
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert owner.stdout is not None
    return owner, f"{socket.gethostname()}:{int(owner.stdout.readline())}"
