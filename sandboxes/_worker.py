"""The local sandbox's worker: a lean, stdlib-only process that is forked per branch.

Started by `LocalSandbox` as `/usr/bin/python3 -I -S _worker.py CONFIG`. It never
imports treegym or any third-party package, because a fork copies the whole process:
the smaller it stays, the faster every branch. Process tree of one sandbox tree:

    bootstrap   (host pid ns; own user/mount/net/ipc/uts ns) exits when the host does
    └── init    (pid 1 of the tree's pid ns) reaps; its death kills the whole tree
        └── sandbox worker (one per LocalSandbox; a fork adds a sibling process)

Each sandbox worker is a persistent Python interpreter plus a request loop. Shell
commands run in their own pid namespace (killing its pid 1 kills the command's whole
process tree) with rlimits, without capabilities, under a seccomp filter (_seccomp.py),
and without the layer store mounted.
"""

from __future__ import annotations

import ast
import errno
import io
import json
import os
import random
import resource
import select
import signal
import socket
import sys
import time
import traceback
import types
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _files  # noqa: E402
import _linux as L  # noqa: E402
import _seccomp  # noqa: E402
import _wire  # noqa: E402
import _world  # noqa: E402

del sys.path[0]
sys.path[:0] = [""]
sys.path += ["/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages"]

_NAMESPACES = (L.CLONE_NEWUSER | L.CLONE_NEWNS | L.CLONE_NEWPID | L.CLONE_NEWNET
               | L.CLONE_NEWIPC | L.CLONE_NEWUTS)
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": _world.WORKDIR,
        "USER": "agent", "LOGNAME": "agent", "LANG": "C.UTF-8", "TERM": "dumb",
        "SHELL": "/bin/bash", "TMPDIR": "/tmp"}
TREE_UIDS = 1 << 30  # host uids of local trees: this + the bootstrap's host pid
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "memory exhausted",
                 "Out of memory")
_PROCESS_HINTS = ("fork: retry", "fork: Resource temporarily unavailable",
                  "BlockingIOError: [Errno 11]", "Resource temporarily unavailable")


class _Stop(BaseException):
    """Raised into user code by a timer or the CPU-limit signal; not an `Exception`."""

    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


class _CappedStream(io.TextIOBase):
    """sys.stdout/sys.stderr: writes through to the call's capture fd, dropping past the cap."""

    def __init__(self, fd: int, cap: int) -> None:
        self.fd, self.cap, self.seen = fd, cap, 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        data = s.encode("utf-8", "replace")
        room = self.cap - self.seen
        self.seen += len(data)
        if room > 0:
            view = memoryview(data[:room])
            while view:
                view = view[os.write(self.fd, view):]
        return len(s)


class Worker:
    """One sandbox: its world (root filesystem), interpreter namespace and channel."""

    def __init__(self, chan: socket.socket, world: _world.World, limits: dict[str, Any]) -> None:
        self.chan = chan
        self.world = world
        self.limits = limits
        self.children: set[int] = set()
        self.pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.namespace = types.ModuleType("__main__")
        self.namespace.__dict__["__builtins__"] = __builtins__
        sys.modules["__main__"] = self.namespace
        self._new_capture()

    def _new_capture(self) -> None:
        """Fresh fds 1 and 2: after a fork the old ones are shared with the parent."""
        for fd in (1, 2):
            mem = os.memfd_create(f"out{fd}", os.MFD_CLOEXEC)
            os.dup2(mem, fd)
            os.close(mem)

    # -- request loop ---------------------------------------------------------------
    def serve(self) -> None:
        handlers = {"python": self.op_python, "run": self.op_run, "write": self.op_write,
                    "read": self.op_read, "listdir": self.op_listdir, "fork": self.op_fork,
                    "ping": self.op_ping}
        while True:
            try:
                msg = _wire.recv(self.chan)
            except (_wire.WireClosed, OSError):
                os._exit(0)
            self._reap()
            blob = b""
            try:
                out = handlers[msg.header["op"]](msg)
                if out is None:  # the new branch of a fork: it answers on its own channel
                    continue
                reply, blob = out
            except OSError as e:
                reply = {"error": f"{e.strerror or e}: {e.filename or ''}".rstrip(": "),
                         "limit": "file_size" if e.errno == 27 else None}
            except Exception as e:  # reported to the host, never fatal to the worker
                reply = {"error": f"{type(e).__name__}: {e}", "limit": None}
            for fd in msg.fds:
                _close(fd)
            _wire.send(self.chan, reply, blob)

    def _reap(self) -> None:
        """Collect dead branches and, unless calls may leave processes behind (whose
        owners would then lose their exit status), every other dead child: as a child
        subreaper the worker adopts what a python() call's processes orphaned."""
        if not self.limits["background"]:
            while True:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if not pid:
                    break
                self.children.discard(pid)
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)

    def op_ping(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        return {"pid": os.getpid(), "method": self.world.method}, b""

    # -- files (see _files.py) -------------------------------------------------------
    def op_write(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        _files.write(msg.header["path"], msg.blob)
        return {}, b""

    def op_read(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        return {}, _files.read(msg.header["path"], self.limits["max_file_mb"] << 20)

    def op_listdir(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        return {"names": _files.listdir(msg.header["path"])}, b""

    # -- the persistent interpreter -------------------------------------------------
    def op_python(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        cap = self.limits["max_output_bytes"]
        timeout = float(msg.header["timeout"])
        for fd in (1, 2):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        out, err = _CappedStream(1, cap), _CappedStream(2, cap)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        limit, code, start = None, 0, time.monotonic()
        children_before = L.children()
        cpu_now = int(resource.getrusage(resource.RUSAGE_SELF).ru_utime
                      + resource.getrusage(resource.RUSAGE_SELF).ru_stime)
        _, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
        try:
            resource.setrlimit(resource.RLIMIT_NPROC,
                               (min(nproc_hard, _count_processes() + self.limits["max_processes"]),
                                nproc_hard))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_now + self.limits["cpu_seconds"],
                                                     resource.RLIM_INFINITY))
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                _execute(msg.header["code"], self.namespace.__dict__)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                err.write(f"{e.code}\n")
        except _Stop as e:
            limit, code = e.limit, 1
            err.write(_user_traceback(e).replace("_Stop: " + e.limit,
                                                 _STOP_TEXT[e.limit].format(timeout)))
        except BaseException as e:  # noqa: B036 - user code may raise anything
            code = 1
            if isinstance(e, MemoryError):
                limit = "memory"
            err.write(_user_traceback(e))
        finally:
            sys.stdout, sys.stderr = saved
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc_hard, nproc_hard))
            resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)
        if limit is not None or not self.limits["background"]:
            self._kill_spawned_since(children_before)
        return {
            "stdout": _read_capture(1, cap), "stderr": _read_capture(2, cap), "exit_code": code,
            "timed_out": limit == "timeout", "limit": None if limit == "timeout" else limit,
            "truncated": max(out.seen, os.fstat(1).st_size) > cap
                         or max(err.seen, os.fstat(2).st_size) > cap,
            "seconds": time.monotonic() - start,
        }, b""

    def _kill_spawned_since(self, children_before: set[int]) -> None:
        """A call takes the processes it started down with it when it ends, as a command
        does: one left running would escape the call's time and CPU limits. Only with
        `background` on do they outlive a call that ended normally. Other branches'
        workers and what earlier calls left (children from before the call, with
        everything below them) are spared. Double-forked daemons are found too, because
        the worker is a child subreaper. Repeated because a fork bomb keeps making new
        ones."""
        for _ in range(100):
            spawned = L.descendants(os.getpid(), children_before)
            if not spawned:
                return
            for pid in spawned:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in spawned:  # the interrupted code can no longer wait for its children
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.002)

    # -- shell commands -------------------------------------------------------------
    def op_run(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        cap = self.limits["max_output_bytes"]
        start = time.monotonic()
        deadline = start + float(msg.header["timeout"])
        nproc = min(_count_processes() + self.limits["max_processes"],
                    resource.getrlimit(resource.RLIMIT_NPROC)[1])
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        L.unshare(L.CLONE_NEWPID)  # only the next child enters the new pid namespace
        try:
            pid = os.fork()
            if pid == 0:
                _exec_command(msg.header["cmd"], out_w, err_w, nproc, self.limits)
        finally:
            L.setns(self.pidns, L.CLONE_NEWPID)  # later forks (branches) stay in the tree's
            os.close(out_w)
            os.close(err_w)
        streams = {out_r: bytearray(), err_r: bytearray()}
        seen = {out_r: 0, err_r: 0}
        timed_out = False
        open_fds = [out_r, err_r]
        for fd in open_fds:
            _grow_pipe(fd)
        while open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not timed_out:
                timed_out = True
                os.kill(pid, signal.SIGKILL)  # pid 1 of the command's pid ns: all of it dies
            ready, _, _ = select.select(open_fds, [], [], max(remaining, 0.05) if not timed_out
                                        else 1.0)
            for fd in ready:
                data = os.read(fd, 1 << 20)
                if not data:
                    open_fds.remove(fd)
                    os.close(fd)
                    continue
                seen[fd] += len(data)
                room = cap - len(streams[fd])
                if room > 0:
                    streams[fd] += data[:room]
        _, status, usage = os.wait4(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        stderr = streams[err_r].decode("utf-8", "replace")
        cpu_hit = usage.ru_utime + usage.ru_stime >= self.limits["cpu_seconds"] - 0.05
        return {
            "stdout": streams[out_r].decode("utf-8", "replace"), "stderr": stderr,
            "exit_code": code, "timed_out": timed_out, "truncated": max(seen.values()) > cap,
            "limit": None if timed_out else _command_limit(code, stderr, cpu_hit),
            "seconds": time.monotonic() - start,
        }, b""

    # -- forking --------------------------------------------------------------------
    def op_fork(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes] | None:
        (chan_fd,) = msg.fds
        copied = self.world.copy_for_child() if self.world.method == "copy" else None
        self.world.before_fork()
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return {"pid": pid}, b""
        self.chan.close()
        self.chan = socket.socket(fileno=chan_fd)
        self.children = set()
        try:
            os.setpgid(0, 0)
            L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)  # not inherited across fork
            L.unshare(L.CLONE_NEWNS)
            self.world.enter_child(copied)
            self._new_capture()
            _reseed()
        except BaseException as e:  # noqa: B036 - report, then leave
            _wire.send(self.chan, {"error": f"fork setup failed: {e}"})
            os._exit(1)
        _wire.send(self.chan, {"hello": os.getpid(), "method": self.world.method})
        return None


_STOP_TEXT = {"timeout": "TimeoutError: the call exceeded its {:g} s timeout",
              "cpu": "TimeoutError: the call exceeded its CPU-seconds limit"}


def _raise_stop(limit: str) -> Any:
    def handler(signum: int, frame: Any) -> None:
        raise _Stop(limit)
    return handler


def _execute(code: str, ns: dict[str, Any]) -> None:
    """Run code like a notebook cell: the value of a final expression is printed."""
    tree = ast.parse(code, "<sandbox>", "exec")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<sandbox>", "exec"), ns)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<sandbox>", "eval"), ns)
        if value is not None:
            print(repr(value))


def _user_traceback(e: BaseException) -> str:
    """The traceback without the worker's own frames."""
    report = traceback.TracebackException(type(e), e, e.__traceback__)
    report.stack = traceback.StackSummary.from_list(
        [f for f in report.stack if f.filename != __file__])
    return "".join(report.format())


def _read_capture(fd: int, cap: int) -> str:
    return os.pread(fd, cap, 0).decode("utf-8", "replace")


def _count_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl
        fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wakeups for big outputs
    except OSError:
        pass


def _command_limit(code: int, stderr: str, cpu_hit: bool) -> str | None:
    if code == 128 + signal.SIGXCPU or (code and cpu_hit):
        return "cpu"
    if code == 128 + signal.SIGXFSZ:
        return "file_size"
    if code != 0 and any(h in stderr for h in _MEMORY_HINTS):
        return "memory"
    if any(h in stderr for h in _PROCESS_HINTS):
        return "processes"
    return None


def _exec_command(cmd: str, out_w: int, err_w: int, nproc: int, limits: dict[str, Any]) -> None:
    """In pid 1 of the command's new pid namespace: confine, then become bash."""
    try:
        os.setsid()
        L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
        L.unshare(L.CLONE_NEWNS)
        L.umount(_world.STORE)  # commands never see other branches' layers
        L.mount("proc", "/proc", "proc", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        cpu = limits["cpu_seconds"]
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        L.prctl(L.PR_SET_NO_NEW_PRIVS, 1)
        _seccomp.install()
        os.chdir(_world.WORKDIR)
        # A trap keeps bash from exec-ing the last command: pid 1 of a pid namespace
        # ignores signals it has no handler for, the CPU limit's SIGXCPU included.
        os.execve("/bin/bash", ["bash", "-c", "trap : EXIT; " + cmd], _ENV)
    finally:
        os._exit(127)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _reseed() -> None:
    """Branches must not replay the same random numbers."""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _set_limits(limits: dict[str, Any]) -> None:
    """Hard per-process caps that user code cannot raise (raising needs the host's root)."""
    mem = limits["memory_mb"] << 20
    size = limits["max_file_mb"] << 20
    tree = limits["max_tree_processes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_NPROC, (tree, tree))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# -- bootstrap ----------------------------------------------------------------------
def _enter_namespaces(sandbox_uid: int | None, network: bool) -> None:
    """Own user, mount, pid, net, ipc and uts namespaces; one uid mapped, never host root.

    Run as root, the tree takes a host uid of its own (`sandbox_uid`, by default
    TREE_UIDS + this bootstrap's pid, unique among live trees): the kernel counts user
    namespaces, inotify instances and keys per uid, so a tree that exhausts its quotas
    exhausts only its own. A new network namespace has only a downed loopback: no route,
    no DNS, and nothing listening inside is reachable from the host. `network=True` keeps
    the host's.
    """
    if sandbox_uid is None:
        sandbox_uid = TREE_UIDS + os.getpid()
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(sandbox_uid, sandbox_uid, sandbox_uid)
        os.setresuid(sandbox_uid, sandbox_uid, sandbox_uid)
        L.prctl(L.PR_SET_DUMPABLE, 1)
    uid, gid = os.getuid(), os.getgid()
    L.unshare(_NAMESPACES & ~L.CLONE_NEWNET if network else _NAMESPACES)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{_world.UID} {uid} 1"),
                       ("gid_map", f"{_world.UID} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    socket.sethostname("sandbox")


def _namespace_error(e: OSError) -> str:
    """ENOSPC means user namespaces are off (a quota of 0) or the quota is used up."""
    why = f"cannot create the sandbox namespaces: {e}"
    if e.errno != errno.ENOSPC:
        return why
    with open("/proc/sys/user/max_user_namespaces") as f:
        quota = int(f.read())
    if quota == 0:
        return f"{why}: user namespaces are disabled here (user.max_user_namespaces = 0)"
    return (f"{why}: uid {os.getuid()} has no user namespace left: its quota "
            f"(user.max_user_namespaces = {quota} here, or a lower one in an enclosing "
            "namespace) is used up by other processes of that uid; close them or raise it")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    chan = socket.socket(fileno=cfg["chan_fd"])
    lifeline = cfg["lifeline_fd"]
    if os.read(lifeline, 1) != b"g":  # the host is done placing us (cgroup, credentials)
        os._exit(1)
    try:
        _enter_namespaces(cfg["sandbox_uid"], cfg["network"])
    except OSError as e:  # the host must hear why
        _wire.send(chan, {"error": _namespace_error(e)})
        raise SystemExit(1) from None
    init = os.fork()
    if init:
        chan.close()
        _await_host(lifeline, init)
    L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.close(lifeline)
    try:
        ro_dirs = _world.build_store("/tmp", cfg["disk_mb"], cfg["network"])
    except BaseException as e:  # noqa: B036
        _wire.send(chan, {"error": f"cannot build the sandbox filesystem: {e}"})
        os._exit(1)
    if os.fork():
        chan.close()
        _reap_forever()
    os.setpgid(0, 0)
    L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)
    world = _world.World(ro_dirs, cfg["method"], cfg["squash_at"])
    try:
        L.unshare(L.CLONE_NEWNS)
        world.enter_first()
        _set_limits(cfg["limits"])
    except BaseException as e:  # noqa: B036
        _wire.send(chan, {"error": f"cannot mount the sandbox root: {e}"})
        os._exit(1)
    signal.signal(signal.SIGALRM, _raise_stop("timeout"))
    signal.signal(signal.SIGXCPU, _raise_stop("cpu"))
    worker = Worker(chan, world, cfg["limits"])
    _wire.send(chan, {"hello": os.getpid(), "method": world.method})
    worker.serve()


def _await_host(lifeline: int, init: int) -> None:
    """The bootstrap: once the host closes the lifeline (or dies), take the tree down.

    Killing the tree's init makes the kernel kill every process in its pid namespace;
    waiting for it means all of them are gone when the host's `wait()` returns.
    """
    while os.read(lifeline, 1):
        pass
    os.kill(init, signal.SIGKILL)
    os.waitpid(init, 0)
    os._exit(0)


def _reap_forever() -> None:
    """The tree's init: collect orphaned sandbox workers until the tree is torn down."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(3600)
        except InterruptedError:
            continue


if __name__ == "__main__":
    main()
