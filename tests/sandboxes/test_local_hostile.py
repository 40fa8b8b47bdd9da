"""Hostile code in a local sandbox: each attempt is contained and the host is untouched."""

from __future__ import annotations

import os
import socket

import pytest

from treegym.sandboxes import SandboxDead
from treegym.sandboxes.local import LocalSandbox

pytestmark = pytest.mark.usefixtures("local_leak_check")


def test_no_network_connect_or_dns(sb: LocalSandbox) -> None:
    r = sb.run("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), 2)\"")
    assert r.exit_code != 0 and "unreachable" in r.stderr
    assert sb.run("getent hosts example.com").exit_code != 0
    r = sb.python("import socket\ntry:\n    socket.getaddrinfo('example.com', 80)\n"
                  "except OSError as e:\n    print('no dns')")
    assert r.stdout == "no dns\n"
    assert sb.run("cat /proc/net/dev | grep -c :").stdout.strip() == "1"  # loopback only


def test_listener_inside_is_unreachable_from_host(sb: LocalSandbox) -> None:
    port = int(sb.python("import socket\nsrv = socket.socket()\nsrv.bind(('0.0.0.0', 0))\n"
                         "srv.listen()\nsrv.getsockname()[1]").stdout)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.parametrize("path", ["/root", "/work", "/etc/shadow", "/proc/1/root/work",
                                  "/proc/self/root/root", "/workspace/../work"])
def test_host_paths_are_invisible(sb: LocalSandbox, path: str) -> None:
    assert sb.run(f"ls {path}/ 2>/dev/null | head -3").stdout == ""
    assert sb.python(f"import os; os.path.exists({path!r}) and os.listdir({path!r})"
                     ).stdout in ("False\n", "[]\n")


def test_host_homes_and_secrets_are_invisible(sb: LocalSandbox) -> None:
    inside = sb.run("ls /home; cat /etc/passwd").stdout
    assert inside.split("\n")[0] == "agent"
    for name in os.listdir("/home"):
        assert sb.run(f"test -e /home/{name}").exit_code != 0 or name == "agent"
    assert "root:x:0:0" in inside and os.uname().nodename not in sb.run("hostname").stdout


def test_proc_shows_no_host_processes(sb: LocalSandbox) -> None:
    assert int(sb.run("ls /proc | grep -c '^[0-9]'").stdout) <= 3  # bash, ls, grep
    roots = sb.python("import os\nsorted({os.readlink(f'/proc/{p}/root') for p in os.listdir"
                      "('/proc') if p.isdigit()})").stdout
    assert roots == "['/']\n"
    listing = sb.python("import os; sorted(os.listdir('/proc/1/root'))").stdout
    assert "work" not in listing and "root" not in listing


def test_writes_outside_workdir_stay_inside(sb: LocalSandbox) -> None:
    marker = f"treegym-hostile-{os.getpid()}"
    r = sb.run(f"touch /etc/{marker} /tmp/{marker} /var/tmp/{marker} && echo wrote")
    assert r.stdout == "wrote\n"
    assert sb.run(f"touch /usr/{marker}").exit_code != 0
    r = sb.python("import subprocess\nsubprocess.run('mount -o remount,rw /usr', shell=True,"
                  " capture_output=True).returncode")
    assert r.stdout != "0\n"
    for host_dir in ("/etc", "/tmp", "/var/tmp", "/usr"):
        assert not os.path.exists(f"{host_dir}/{marker}")


def test_killing_parents_and_init(sb: LocalSandbox) -> None:
    r = sb.run("kill -9 $PPID; kill -9 1; kill -9 -1; echo survived")
    assert sb.run("echo usable").stdout == "usable\n"
    # python() code's parent is outside its pid namespace, and its namespace's init
    # ignores signals from inside it, root or not.
    r = sb.python("import os, signal\nprint(os.getppid())\nos.kill(1, signal.SIGKILL)\n"
                  "print('survived')")
    assert r.stdout == "0\nsurvived\n"
    child = sb.fork()
    try:
        # kill -1 from a child branch reaches nothing of its parent's.
        child.python("import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\n"
                     "except ProcessLookupError:\n    pass")
        assert sb.run("echo parent ok").stdout == "parent ok\n"
        assert child.run("echo child ok").stdout == "child ok\n"
    finally:
        child.close()


def test_fork_bomb_is_contained(sb: LocalSandbox) -> None:
    r = sb.run(":(){ :|:& };:; sleep 1; echo done", timeout=4)
    assert r.limit == "processes" or r.timed_out
    assert int(sb.run("ls /proc | grep -c '^[0-9]'").stdout) <= 3
    r = sb.python("import os\nkids = 0\ntry:\n    for _ in range(10_000):\n"
                  "        if os.fork() == 0:\n            os.read(os.open('/dev/zero', 0), 1)\n"
                  "            import time; time.sleep(1); os._exit(0)\n        kids += 1\n"
                  "except OSError as e:\n    print(kids, e.errno)", timeout=5)
    spawned, errno = r.stdout.split()
    assert int(spawned) <= sb.limits.max_processes and errno == "11"
    assert sb.python("print('usable')").stdout == "usable\n"


def test_memory_bomb_is_contained(sb: LocalSandbox) -> None:
    r = sb.python("hog = bytearray(8 << 30)")
    assert r.limit == "memory" and "MemoryError" in r.stderr
    r = sb.run("python3 -c 'x = bytearray(8 << 30)'")
    assert r.limit == "memory"
    r = sb.python("chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))")
    assert r.limit == "memory"
    assert sb.python("del chunks; print('usable')").stdout == "usable\n"


def test_infinite_loops_time_out(sb: LocalSandbox) -> None:
    r = sb.run("while true; do :; done", timeout=1)
    assert r.timed_out and r.exit_code == 137
    r = sb.run("sleep 100 & sleep 100 & wait", timeout=1)
    assert r.timed_out
    assert int(sb.run("ls /proc | grep -c '^[0-9]'").stdout) <= 3
    r = sb.python("x = 1\nwhile True:\n    x += 1", timeout=1)
    assert r.timed_out and "timeout" in r.stderr
    assert sb.python("x > 1").stdout == "True\n"  # state kept, interpreter usable


def test_python_that_ignores_the_timeout_is_killed(sb: LocalSandbox) -> None:
    r = sb.python("import time\nwhile True:\n    try:\n        time.sleep(100)\n"
                  "    except BaseException:\n        pass", timeout=0.5)
    assert r.timed_out and "shut down" in r.stderr
    with pytest.raises(SandboxDead, match="did not answer"):
        sb.run("true")


def test_gigabyte_of_output_is_capped(sb: LocalSandbox) -> None:
    cap = sb.limits.max_output_bytes
    r = sb.run("head -c 1000000000 /dev/zero | tr '\\0' x", timeout=20)
    assert r.truncated and len(r.stdout) == cap and r.exit_code == 0
    r = sb.python("for _ in range(1000):\n    print('y' * 1_000_000)", timeout=20)
    assert r.truncated and len(r.stdout) == cap
    r = sb.python("import os\nfor _ in range(100):\n    os.write(1, b'z' * 1_000_000)")
    assert r.truncated and len(r.stdout) == cap
    assert sb.run("echo small").stdout == "small\n"


def test_layer_store_is_hidden_from_commands(sb: LocalSandbox) -> None:
    assert sb.run("ls -A /.tg").stdout == ""
    assert sb.run("ls /proc/*/root/.tg/l /proc/*/cwd/../../.tg/l 2>/dev/null").stdout == ""


def _processes(sb: LocalSandbox) -> str:
    return sb.python("import os\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n"
                     "        print(open(f'/proc/{p}/cmdline').read().replace('\\0', ' '))"
                     ).stdout


def test_a_python_call_takes_its_processes_along_even_daemons(sb: LocalSandbox) -> None:
    """A process that outlived its call would escape the call's time and CPU limits: here a
    double-forked, setsid daemon that raised its own soft CPU limit and spins."""
    r = sb.python("import os, resource\n"
                  "if os.fork() == 0:\n"
                  "    os.setsid()\n"
                  "    if os.fork() == 0:\n"
                  "        cpu = resource.RLIMIT_CPU\n"
                  "        resource.setrlimit(cpu, (10**6, resource.RLIM_INFINITY))\n"
                  "        os.execv('/bin/sh', ['sh', '-c', 'while :; do :; done # spin'])\n"
                  "    os._exit(0)\n"
                  "import subprocess\nkeep = subprocess.Popen(['sleep', '1001'])")
    assert r.ok, r
    left = _processes(sb)
    assert "spin" not in left and "sleep 1001" not in left, left


def test_with_background_on_a_call_that_ends_normally_keeps_them() -> None:
    with LocalSandbox(background=True) as sb:
        sb.python("import subprocess\nkeep = subprocess.Popen(['sleep', '1001'])")
        assert "sleep 1001" in _processes(sb)
        assert sb.python("keep.poll() is None").stdout == "True\n"


def test_a_python_call_stopped_by_a_limit_takes_its_processes_along() -> None:
    with LocalSandbox(background=True) as sb:
        _stopped_call_takes_its_processes_along(sb)


def _stopped_call_takes_its_processes_along(sb: LocalSandbox) -> None:
    sb.python("import subprocess\nkeep = subprocess.Popen(['sleep', '1001'])")
    r = sb.python("import subprocess, time\n"
                  "spawned = [subprocess.Popen(['sleep', '1002']) for _ in range(3)]\n"
                  "subprocess.Popen(['sh', '-c', 'sleep 1003 & sleep 1004'])\n"
                  "time.sleep(100)", timeout=1)
    assert r.timed_out
    left = _processes(sb)
    assert "sleep 1001" in left  # started by an earlier call that finished normally
    assert not any(f"sleep {n}" in left for n in (1002, 1003, 1004)), left
    assert sb.python("keep.poll() is None").stdout == "True\n"


def test_a_memory_bomb_spread_over_processes_meets_the_tree_cgroup() -> None:
    """Each process stays under its own address-space cap; only the tree's cgroup stops
    their sum (here 4 x 200 MB against a 400 MB tree)."""
    with LocalSandbox(tree_memory_mb=400, timeout=30) as box:
        if "memory-cgroup" not in box.capabilities.isolation:
            pytest.skip(f"no cgroup for the tree here: {box.capabilities.notes}")
        r = box.run("for i in 1 2 3 4; do (python3 -c 'b = bytearray(200 << 20); "
                    "import time; time.sleep(2)'; echo \"job $i: $?\") & done; wait")
        statuses = [line.rsplit(" ", 1)[1] for line in r.stdout.splitlines()
                    if line.startswith("job")]
        assert "137" in statuses, r
        assert statuses.count("0") < 4, r
        assert box.python("print('usable')").stdout == "usable\n"
