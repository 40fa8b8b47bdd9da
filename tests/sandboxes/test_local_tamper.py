"""Code in a branch tampering with what the host hears, what the host writes, and other trees.

Each attack is one an RL policy could learn, because it pays: a forged reply or a write
into a shared layer can fake a reward. The host must bound every reply, follow no link,
touch only regular files, and keep one tree's kernel quotas away from another's.
"""

from __future__ import annotations

import os
import time

import pytest

from treegym.sandboxes import SandboxDead, SandboxError
from treegym.sandboxes.local import LocalSandbox

pytestmark = pytest.mark.usefixtures("local_leak_check")

# python() code that finds its worker's channel to the host, as hostile code can.
CHANNEL = ("import gc, os, socket, struct, sys, json, signal\n"
           "worker = next(o for o in gc.get_objects() if type(o).__name__ == 'Worker')\n"
           "chan = worker.chan\n")


def frame(header: str, blob: bytes = b"") -> str:
    """python() source for the bytes of one wire message with this JSON header."""
    return (f"body = {header!r}.encode()\n"
            f"msg = struct.pack('!II', len(body), {len(blob)}) + body + {blob!r}\n")


def host_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_reply_trickled_a_byte_a_second_is_cut_off_at_the_call_deadline() -> None:
    with LocalSandbox(timeout=2) as sb:
        start = time.monotonic()
        r = sb.python(CHANNEL + "signal.setitimer(signal.ITIMER_REAL, 0)\n"
                      "chan.sendall(struct.pack('!II', 200, 0))\n"
                      "import time\nfor _ in range(30):\n"
                      "    chan.sendall(b' ')\n    time.sleep(1)\n", timeout=2)
        took = time.monotonic() - start
        assert r.timed_out and took < 12, (took, r)
        with pytest.raises(SandboxDead):
            sb.run("true")


def test_a_reply_claiming_a_gigabyte_kills_the_branch_at_once() -> None:
    with LocalSandbox() as sb:
        start = time.monotonic()
        with pytest.raises(SandboxDead, match="protocol"):
            sb.python(CHANNEL + "chan.sendall(struct.pack('!II', 1 << 30, 0))\n"
                      "import time\ntime.sleep(20)")
        assert time.monotonic() - start < 5


def test_forged_output_past_the_cap_is_refused(sb: LocalSandbox) -> None:
    big = "x" * (sb.limits.max_output_bytes * 8)
    with pytest.raises(SandboxDead, match="protocol"):
        sb.python(CHANNEL + frame('{"stdout": "' + big + '"}') + "chan.sendall(msg)")


def test_descriptors_sent_with_a_reply_are_closed_not_kept() -> None:
    before = host_fds()
    for _ in range(3):
        with LocalSandbox() as sb, pytest.raises(SandboxDead, match="descriptors"):
            sb.python(CHANNEL + frame('{"stdout": "ok"}')
                      + "fds = [os.memfd_create('x') for _ in range(4)]\n"
                        "socket.send_fds(chan, [msg], fds)\nimport time\ntime.sleep(5)")
    assert host_fds() <= before


@pytest.mark.parametrize("garbage", [b"\0\0\0\5\0\0\0\0hello", b"\0\0\0\2\0\0\0\0[]",
                                     b"\0\0\0\3\0\0\0\0\xff\xfe\xfd"])
def test_garbage_on_the_channel_is_a_dead_sandbox(garbage: bytes) -> None:
    with LocalSandbox() as sb:
        with pytest.raises(SandboxDead, match="protocol"):
            sb.python(CHANNEL + f"chan.sendall({garbage!r})\nimport time\ntime.sleep(5)")


def test_a_forged_result_of_the_wrong_types_is_a_dead_sandbox(sb: LocalSandbox) -> None:
    with pytest.raises(SandboxDead, match="malformed"):
        sb.python(CHANNEL + frame('{"exit_code": "0", "stdout": 1}') + "chan.sendall(msg)\n"
                  "import time\ntime.sleep(5)")


# -- host-side file operations ------------------------------------------------------
def test_a_symlink_into_the_layer_store_is_not_followed_by_host_writes(sb: LocalSandbox) -> None:
    sibling = sb.fork()
    try:
        sb.run("ln -s /.tg/skel/workspace/planted notes.txt && ln -s /.tg/skel/etc/passwd pw")
        with pytest.raises(SandboxError, match="symlink"):
            sb.write_file("notes.txt", "written through the link")
        with pytest.raises(SandboxError, match="symlink"):
            sb.read_file("pw")
        assert "planted" not in sibling.listdir()
        assert "planted" not in sb.fork().listdir()
    finally:
        sibling.close()


def test_a_link_swapped_in_for_a_directory_is_not_followed(sb: LocalSandbox) -> None:
    sb.run("mkdir -p out && ln -s /.tg/skel/etc deep && mkdir real")
    with pytest.raises(SandboxError, match="symlink"):
        sb.write_file("deep/hosts", "evil")
    sb.write_file("real/a/b/c.txt", "fine")  # parents are made, one checked step at a time
    assert sb.read_file("real/a/b/c.txt") == b"fine"


def test_a_fifo_or_device_under_a_name_is_refused_without_hanging() -> None:
    with LocalSandbox(timeout=5) as sb:
        sb.run("mkfifo pipe && touch zero")
        sb.python("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                  "assert libc.mount(b'/dev/zero', b'/workspace/zero', None, 0x1000, None) == 0")
        start = time.monotonic()
        with pytest.raises(SandboxError, match="regular file"):
            sb.read_file("pipe")
        with pytest.raises(SandboxError, match="regular file"):
            sb.write_file("pipe", "x")
        with pytest.raises(SandboxError, match="across a mount|regular file"):
            sb.read_file("zero")
        assert time.monotonic() - start < 3
        assert sb.run("echo alive").stdout == "alive\n"


# -- quotas shared between trees ----------------------------------------------------
INOTIFY_ALL = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nheld = []\n"
               "while len(held) < 100000:\n    fd = libc.inotify_init1(0)\n"
               "    if fd < 0:\n        break\n    held.append(fd)\nprint(len(held))")


@pytest.mark.skipif(os.geteuid() != 0, reason="a host uid per tree needs a root host process")
def test_one_tree_exhausting_its_inotify_quota_leaves_another_tree_its_own() -> None:
    with LocalSandbox() as greedy, LocalSandbox() as other:
        held = int(greedy.python(INOTIFY_ALL).stdout)
        assert held > 0
        r = other.python("import ctypes\nprint(ctypes.CDLL(None).inotify_init1(0) >= 0)")
        assert r.stdout == "True\n", r


@pytest.mark.skipif(os.geteuid() != 0, reason="a host uid per tree needs a root host process")
def test_each_tree_runs_as_a_host_uid_of_its_own() -> None:
    with LocalSandbox() as a, LocalSandbox() as b:
        uids = {sb.python("import os\nprint(open('/proc/self/uid_map').read().split()[1])")
                .stdout for sb in (a, b)}
        assert len(uids) == 2
        assert a.fork().python("print(open('/proc/self/uid_map').read().split()[1])").stdout \
            in uids


# -- memory and CPU of the tree -----------------------------------------------------
def test_an_oom_kill_by_the_tree_cgroup_is_named_on_the_branch() -> None:
    with LocalSandbox(tree_memory_mb=300, memory_mb=2048) as sb:
        if "memory-cgroup" not in sb.capabilities.isolation:
            pytest.skip(f"no cgroup for the tree here: {sb.capabilities.notes}")
        with pytest.raises(SandboxDead, match="memory cgroup"):
            sb.python("hog = b'x' * (600 << 20)")


def test_a_tmpfs_python_mounts_is_bounded_by_the_tree_cgroup() -> None:
    """python() runs in the worker, which mounts to fork, so it can mount a tmpfs past
    `disk_mb`; its pages are charged to the tree's memory cgroup, which stops the fill."""
    with LocalSandbox(tree_memory_mb=300, memory_mb=2048, disk_mb=64) as sb:
        if "memory-cgroup" not in sb.capabilities.isolation:
            pytest.skip(f"no cgroup for the tree here: {sb.capabilities.notes}")
        with pytest.raises(SandboxDead, match="memory cgroup"):
            sb.python("import ctypes, os\nos.makedirs('/tmp/big', exist_ok=True)\n"
                      "libc = ctypes.CDLL(None, use_errno=True)\n"
                      "assert libc.mount(b'big', b'/tmp/big', b'tmpfs', 0, b'size=2g') == 0\n"
                      "for i in range(150):\n"  # files under max_file_mb, 1.2 GB in all
                      "    with open(f'/tmp/big/{i}', 'wb') as f:\n"
                      "        f.write(b'x' * (8 << 20))", timeout=60)


def test_the_tree_cpu_cgroup_caps_a_spinning_command() -> None:
    with LocalSandbox(tree_cpus=0.25) as sb:
        if "cpu-cgroup" not in sb.capabilities.isolation:
            pytest.skip(f"no CPU cgroup for the tree here: {sb.capabilities.notes}")
        r = sb.run("python3 -c \"import time, resource\nt = time.time()\n"
                   "while time.time() - t < 2: pass\n"
                   "print(resource.getrusage(resource.RUSAGE_SELF).ru_utime)\"")
        assert float(r.stdout) < 1.0, r  # 2 s of wall time at a quarter of a core


# -- what commands may ask of the kernel --------------------------------------------
@pytest.mark.parametrize("cmd", [
    "unshare -Urm sh -c 'mount -t tmpfs none /tmp && echo mounted'",
    "unshare -U true && echo unshared",
    "python3 -c \"import ctypes; l = ctypes.CDLL(None); "
    "print('unshared' if l.unshare(0x10000000) == 0 else '')\"",
    "python3 -c \"import ctypes; l = ctypes.CDLL(None); "
    "print('key' if l.syscall(248, b'user', b'k', b'v', 1, -2) >= 0 else '')\"",
])
def test_commands_cannot_make_namespaces_mount_or_hold_keys(sb: LocalSandbox, cmd: str) -> None:
    r = sb.run(cmd)
    assert not any(w in r.stdout for w in ("mounted", "unshared", "key")), r


def test_the_seccomp_filter_leaves_ordinary_work_alone(sb: LocalSandbox) -> None:
    r = sb.run("python3 -c \"import threading, subprocess; t = threading.Thread(target=print, "
               "args=('thread',)); t.start(); t.join(); "
               "print(subprocess.run(['echo', 'spawned'], capture_output=True, text=True).stdout)\""
               " && (echo sub; sleep 0.1) | cat && date +%s >/dev/null && echo done")
    assert r.ok and r.stdout.split() == ["thread", "spawned", "sub", "done"], r
