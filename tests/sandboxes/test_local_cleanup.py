"""No processes, mounts or temp dirs outlive a sandbox, however it ends."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import pytest

from treegym.sandboxes import SandboxDead
from treegym.sandboxes._cgroup import existing
from treegym.sandboxes.local import LocalSandbox, worker_processes

pytestmark = pytest.mark.usefixtures("local_leak_check")


def _mine() -> set[int]:
    return set(worker_processes(ancestor=os.getpid()))


def _wait_gone(pids: set[int], seconds: float = 5.0) -> set[int]:
    """Those of `pids` still alive as sandbox workers after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        alive = pids & set(worker_processes())
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_close_removes_the_whole_tree() -> None:
    box = LocalSandbox()
    kids = [box.fork() for _ in range(3)]
    kids[0].run("sleep 1000 > /dev/null 2>&1 &", timeout=2)
    kids[1].python("import subprocess; p = subprocess.Popen(['sleep', '1000'])")
    tree = _mine()
    assert len(tree) >= 6  # bootstrap, init, 4 sandboxes
    for kid in kids:
        kid.close()
    box.close()
    box.close()
    assert tree & set(worker_processes()) == set()


def test_garbage_collection_closes() -> None:
    box = LocalSandbox()
    child = box.fork()
    tree = _mine()
    del box, child
    gc.collect()
    assert _wait_gone(tree) == set()


def test_keyboard_interrupt_during_a_call() -> None:
    box = LocalSandbox()
    tree = _mine()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            box.python("import time; time.sleep(30)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    with pytest.raises(SandboxDead, match="interrupted"):
        box.run("true")
    assert _wait_gone(tree) == set()


def test_crashed_worker_is_reported_dead() -> None:
    with LocalSandbox() as box:
        child = box.fork()
        tree = _mine()
        with pytest.raises(SandboxDead):
            child.python("import os; os._exit(3)")
        with pytest.raises(SandboxDead, match="exited"):
            child.run("true")
        with pytest.raises(SandboxDead):
            box.python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert _wait_gone(tree) == set()


def test_host_process_killed_leaves_nothing() -> None:
    script = ("from treegym.sandboxes.local import LocalSandbox\nimport time\n"
              "box = LocalSandbox()\nkids = [box.fork() for _ in range(3)]\n"
              "kids[0].run('sleep 1000 > /dev/null 2>&1 &')\nprint('ready', flush=True)\n"
              "time.sleep(60)\n")
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None and host.stdout.readline() == "ready\n"
        tree = set(worker_processes(ancestor=host.pid))
        assert len(tree) >= 6
        cgroups = existing(host.pid)
    finally:
        host.kill()
        host.wait()
    assert _wait_gone(tree) == set()
    # a killed owner cannot remove its tree's cgroup; once the last of its processes has
    # left, the next sandbox opened sweeps it
    deadline = time.monotonic() + 10
    while any(open(f"{path}/cgroup.procs").read() for path in cgroups):
        assert time.monotonic() < deadline, "the killed tree's processes did not leave"
        time.sleep(0.05)
    with LocalSandbox() as box:
        assert bool(cgroups) == ("memory-cgroup" in box.capabilities.isolation)
    assert not any(os.path.exists(path) for path in cgroups)
