"""Branches of one tree reaching each other: the failure only trees have.

Under RL, a branch that can read a sibling's files can copy its answer, and one that can
write them or kill its processes can sink its rivals' rewards. Each test plays the
attacker from python() (which runs as root of the tree's user namespace) or from a
command, and checks that the victims' files and processes are untouched.
"""

from __future__ import annotations

import os
import platform
import time

import pytest

from treegym.sandboxes.local import LocalSandbox, worker_processes

pytestmark = pytest.mark.usefixtures("local_leak_check")

SECRET = "B's secret"
# Everything python() code could use to reach another branch: other processes' roots and
# working dirs, the layer store's mount point, its own init's root; it reads and appends
# to every file found there, then SIGKILLs every process it can see but itself and init.
ATTACK = r"""
import glob, os, signal
found, killed = [], []
others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]
paths = glob.glob('/.tg/**', recursive=True)
for pid in others:
    paths += glob.glob(f'/proc/{pid}/root/**', recursive=True)
    paths += glob.glob(f'/proc/{pid}/cwd/**', recursive=True)
for path in paths:
    try:
        if os.path.isfile(path):
            found.append(open(path).read())
            with open(path, 'a') as f:
                f.write('tampered')
    except OSError:
        pass
for name in os.listdir('/proc'):
    if name.isdigit() and int(name) not in (1, os.getpid()):
        try:
            os.kill(int(name), signal.SIGKILL)
            killed.append(name)
        except OSError:
            pass
print(found, killed)
"""
SHELL_ATTACK = ("cat /proc/*/root/workspace/* /proc/*/cwd/* 2>/dev/null; "
                "find /.tg /proc/1/root -type f 2>/dev/null; kill -9 -1; echo done")


def test_python_in_a_branch_reaches_no_siblings_files_or_processes(sb: LocalSandbox) -> None:
    sb.write_file("base.txt", "base")
    a, b = sb.fork(), sb.fork()
    try:
        b.write_file("secret.txt", SECRET)
        b.python("alive = True")
        r = a.python(ATTACK)
        assert r.ok, r.stderr
        assert SECRET not in r.stdout and r.stdout == "[] []\n"
        assert b.read_file("secret.txt") == SECRET.encode()
        assert b.read_file("base.txt") == sb.read_file("base.txt") == b"base"
        assert b.python("alive").stdout == "True\n" and sb.run("echo ok").stdout == "ok\n"
    finally:
        a.close()
        b.close()


def test_a_child_branch_reaches_nothing_of_its_parent(sb: LocalSandbox) -> None:
    child = sb.fork()
    try:
        sb.write_file("later.txt", "written after the fork")
        r = child.python(ATTACK)
        assert r.stdout == "[] []\n", r.stdout
        assert sb.read_file("later.txt") == b"written after the fork"
        assert sb.python("1 + 1").stdout == "2\n"
    finally:
        child.close()


def test_a_parent_reaches_nothing_of_its_children(sb: LocalSandbox) -> None:
    """A parent branch goes on after a fork: its later code (a `kill -9 -1`, a scan of
    /proc) must not sink the children it would be ranked against."""
    a, b = sb.fork(), sb.fork()
    try:
        for child in (a, b):
            child.write_file("secret.txt", SECRET)
            child.python("alive = True")
        r = sb.python(ATTACK)
        assert r.stdout == "[] []\n", r.stdout
        assert sb.run(SHELL_ATTACK).stdout.endswith("done\n")
        for child in (a, b):
            assert child.python("alive").stdout == "True\n"
            assert child.read_file("secret.txt") == SECRET.encode()
        assert sb.python("1 + 1").stdout == "2\n"
    finally:
        a.close()
        b.close()


# A process started before a fork that outlives its call (background=True), detached from
# its process group: after the fork it kills every process it can see, every 20 ms.
LEFTOVER = r"""
import os, signal, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(0.3)
        for _ in range(100):
            for name in os.listdir('/proc'):
                if name.isdigit() and int(name) not in (1, os.getpid()):
                    try:
                        os.kill(int(name), signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.02)
    os._exit(0)
os.wait()
"""


def test_a_parents_background_process_reaches_none_of_its_branches() -> None:
    """A fork ends what earlier calls left running, in the parent's namespace, where the
    child's is nested; the parent's next call runs in a new worker beside the child."""
    with LocalSandbox(timeout=10, background=True) as sb:
        sb.python("alive = True")
        assert sb.python(LEFTOVER).ok
        child = sb.fork()
        try:
            time.sleep(1.0)
            assert sb.python("alive").stdout == "True\n"
            assert child.python("alive").stdout == "True\n"
        finally:
            child.close()


@pytest.mark.skipif(platform.machine() != "x86_64",
                    reason="the inits' small program is x86-64 code; elsewhere they stay Python")
def test_branch_inits_keep_none_of_the_workers_memory(sb: LocalSandbox) -> None:
    """An init is a fork of a worker; left as it is, it would keep the pages its worker
    has since changed, a snapshot per fork and per hand-over (_reaper.py)."""
    sb.python("ballast = bytes(range(256)) * (64 * 4096)")  # 64 MiB
    child = sb.fork()
    try:
        assert child.python("len(ballast)").stdout == sb.python("len(ballast)").stdout
        workers = set(worker_processes(os.getpid(), inits=False))
        inits = set(worker_processes(os.getpid())) - workers
        assert len(inits) >= 3  # the tree's first branch's, the child's, the hand-over's
        for pid in inits:
            with open(f"/proc/{pid}/status") as f:
                rss_kib = int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
            assert rss_kib < 1024, (pid, rss_kib)
    finally:
        child.close()


def test_commands_reach_no_other_branch(sb: LocalSandbox) -> None:
    a, b = sb.fork(), sb.fork()
    try:
        b.write_file("secret.txt", SECRET)
        r = a.run(SHELL_ATTACK)
        assert SECRET not in r.stdout and r.stdout.endswith("done\n")
        assert b.run("cat secret.txt").stdout == SECRET
        assert sb.run("echo ok").stdout == "ok\n"
    finally:
        a.close()
        b.close()


def test_python_sees_only_its_own_branch(sb: LocalSandbox) -> None:
    """No layer store at its mount point, an empty root behind its init, two processes."""
    r = sb.python("import os\nprint(os.listdir('/.tg'), os.listdir('/proc/1/root'), "
                  "sorted(p for p in os.listdir('/proc') if p.isdigit()), os.getpid())")
    assert r.stdout == "[] [] ['1', '2'] 2\n"


def test_closing_a_parent_leaves_its_descendants_running(sb: LocalSandbox) -> None:
    """A branch's pid namespace nests in its parent's; its init, not the parent's worker,
    is what holds it, so the parent can go first."""
    parent = sb.fork()
    parent.python("value = 42")
    child = parent.fork()
    grandchild = child.fork()
    parent.close()
    child.close()
    try:
        assert grandchild.python("value").stdout == "42\n"
        with grandchild.fork() as great:
            assert great.python("value * 2").stdout == "84\n"
    finally:
        grandchild.close()


def test_a_file_held_open_across_a_fork_is_each_branchs_own(sb: LocalSandbox) -> None:
    """A file the parent keeps open is opened again in each branch's own root at the fork:
    a write through it reaches only the writer's world, never the layer the fork froze,
    which the parent and every sibling read as theirs. Offsets and modes carry over."""
    sb.write_file("log.txt", "start\n")
    sb.python("log = open('log.txt', 'a')\nseen = open('log.txt')\nseen.read(3)\n"
              "import tempfile\nscratch = tempfile.TemporaryFile()\n"
              "scratch.write(b'parent scratch'); scratch.flush()")
    a, b = sb.fork(), sb.fork()
    try:
        assert a.python("log.write('from A\\n'); log.flush()\n"
                        "scratch.seek(0); scratch.write(b'A'); scratch.flush()").ok
        assert a.read_file("log.txt") == b"start\nfrom A\n"
        assert b.read_file("log.txt") == sb.read_file("log.txt") == b"start\n"
        assert b.python("seen.read()").stdout == "'rt\\n'\n"
        assert b.python("scratch.seek(0); scratch.read()").stdout == "b'parent scratch'\n"
        assert sb.python("log.write('parent\\n'); log.flush()").ok
        assert sb.read_file("log.txt") == b"start\nparent\n"
        assert a.read_file("log.txt") == b"start\nfrom A\n"
        assert sb.python("scratch.seek(0); scratch.read()").stdout == "b'parent scratch'\n"
    finally:
        a.close()
        b.close()


# Every channel a parent's code could leave open for its children: a pipe, a socket pair,
# a memfd, shared memory, and a /proc directory (the parent's own processes and root).
CHANNELS = r"""
import mmap, os, socket
r, w = os.pipe()
left, right = socket.socketpair()
memfd = os.memfd_create('note')
os.write(memfd, b'parent note')
shared = mmap.mmap(-1, 4096)
shared[:6] = b'parent'
proc = os.open('/proc', os.O_RDONLY | os.O_DIRECTORY)
"""
SEND = r"""
os.write(w, b'A was here')
os.write(left.fileno(), b'A was here')
os.pwrite(memfd, b'A note     ', 0)
shared[:6] = b'A wrot'
"""
RECEIVE = r"""
import select
def ready(fd):
    return bool(select.select([fd], [], [], 0.2)[0])
try:
    pids = [p for p in os.listdir(proc) if p.isdigit()]
except OSError as e:
    pids = type(e).__name__
print(ready(r), ready(right), os.pread(memfd, 11, 0), shared[:6], pids)
"""


def test_pipes_sockets_memfds_shared_memory_and_proc_join_no_branches(sb: LocalSandbox) -> None:
    sb.python(CHANNELS)
    a, b = sb.fork(), sb.fork()
    try:
        r = a.python(SEND)
        assert r.ok, r.stderr
        assert a.python("print(os.pread(memfd, 11, 0), shared[:6])").stdout == \
            "b'A note     ' b'A wrot'\n"
        # /dev/null now: ready to read (EOF), never carrying A's bytes, and no directory
        r = b.python(RECEIVE)
        assert r.stdout == "True True b'parent note' b'parent' NotADirectoryError\n", r
        assert b.python("os.read(r, 64), os.read(right.fileno(), 64)").stdout == "(b'', b'')\n"
        # the parent keeps what it made, but its /proc, which showed the children's
        # processes (it goes on in a new worker, beside them)
        r = sb.python(RECEIVE)
        assert r.stdout == "False False b'parent note' b'parent' NotADirectoryError\n", r
    finally:
        a.close()
        b.close()


# What a tree's branches would otherwise share in the kernel: a hostname, SysV IPC keys,
# abstract unix socket names (which live in the network namespace) and the one /dev.
PLANT = r"""
import ctypes, socket
socket.sethostname('planted')
libc = ctypes.CDLL(None, use_errno=True)
print(libc.shmget(4242, 4096, 0o1666) >= 0)
listener = socket.socket(socket.AF_UNIX)
listener.bind('\0treegym-rendezvous')
listener.listen()
try:
    open('/dev/planted', 'w')
except OSError as e:
    print(type(e).__name__)
"""
LOOK = r"""
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
probe = socket.socket(socket.AF_UNIX)
try:
    probe.connect('\0treegym-rendezvous')
    reached = True
except OSError:
    reached = False
print(socket.gethostname(), libc.shmget(4242, 0, 0), reached, os.path.exists('/dev/planted'))
"""


def test_branches_share_no_hostname_ipc_abstract_socket_or_dev(sb: LocalSandbox) -> None:
    a, b = sb.fork(), sb.fork()
    try:
        r = a.python(PLANT)
        assert r.stdout == "True\nOSError\n", r
        assert a.run("echo x > /dev/by-command").exit_code != 0
        for other in (b, sb):
            r = other.python(LOOK)
            assert r.stdout == "sandbox -1 False False\n", r
        assert b.run("ls /dev/by-command").exit_code != 0
        assert a.python("print(socket.gethostname())").stdout == "planted\n"
    finally:
        a.close()
        b.close()


KEYS = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
"""
ADD_KEY, KEYCTL, KEYCTL_SEARCH, USER_KEYRING = 248, 250, 10, -4


def test_branches_share_no_keyring(sb: LocalSandbox) -> None:
    """Every branch of a tree is one uid of one user namespace, so all would share one
    user keyring: python() is denied the key calls, as commands are."""
    if platform.machine() != "x86_64":
        pytest.skip("the syscall numbers below are x86_64's")
    a, b = sb.fork(), sb.fork()
    try:
        r = a.python(KEYS + f"print(libc.syscall({ADD_KEY}, b'user', b'planted', b'secret', "
                     f"6, {USER_KEYRING}), ctypes.get_errno())")
        assert r.stdout == "-1 1\n", r  # EPERM
        r = b.python(KEYS + f"print(libc.syscall({KEYCTL}, {KEYCTL_SEARCH}, {USER_KEYRING}, "
                     "b'user', b'planted', 0), ctypes.get_errno())")
        assert r.stdout == "-1 1\n", r
    finally:
        a.close()
        b.close()
