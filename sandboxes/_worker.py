"""The local sandbox's worker: a lean, stdlib-only process that is forked per branch.

Started by `LocalSandbox` as `/usr/bin/python3 -I -S _worker.py CONFIG`. It never
imports treegym or any third-party package, because a fork copies the whole process:
the smaller it stays, the faster every branch. Process tree of one sandbox tree:

    bootstrap   (host pid ns; own user/mount/net/ipc/uts ns) exits when the host does
    └── init    (pid 1 of the tree's pid ns) reaps; its death kills the whole tree
        ├── layer keeper (_keeper.py): the only process with the layer store mounted
        └── branch init (_nest.py: pid 1 of the branch's own pid ns, an empty root)
            └── sandbox worker (pid 2 there; a fork nests its child's namespace here,
                and before its next call the worker moves on to a new worker in a
                namespace beside the child's, and exits)

Each sandbox worker is a persistent Python interpreter plus a request loop. python()
code runs in the worker, as root of the tree's user namespace, but it sees only its own
branch: its own root (the keeper's layers out of reach), its own pid namespace and
/proc, so no other branch's process or files (a parent that goes on after a fork is
a sibling of its children), and at a fork nothing it left open (files, pipes, shared memory)
stays shared with another branch (_inherit.py).
Shell commands run in a pid
namespace of their own (killing its pid 1 kills the command's whole process tree) with
rlimits, without capabilities, under a seccomp filter (_seccomp.py).
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import socket
import sys
import time
import types
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cell  # noqa: E402
import _commands  # noqa: E402
import _files  # noqa: E402
import _inherit  # noqa: E402
import _keeper  # noqa: E402
import _linux as L  # noqa: E402
import _nest  # noqa: E402
import _procs  # noqa: E402
import _tree  # noqa: E402
import _wire  # noqa: E402
import _world  # noqa: E402

del sys.path[0]
sys.path[:0] = [""]
sys.path += ["/usr/local/lib/python3/dist-packages", "/usr/lib/python3/dist-packages"]



class Worker:
    """One sandbox: its interpreter namespace, its channel to the host, its socket to the
    layer keeper (which makes its roots), and how deep its pid namespace is nested."""

    def __init__(self, chan: socket.socket, keeper: socket.socket, depth: int, method: str,
                 limits: dict[str, Any]) -> None:
        self.chan, self.keeper, self.depth = chan, keeper, depth
        self.method = method
        self.limits = limits
        self.files = _files.WorkDir(_world.WORKDIR)
        self.children: set[int] = set()
        self.retired = False  # set by op_continue: the branch goes on in a new worker
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
                    "continue": self.op_continue, "ping": self.op_ping}
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
            if self.retired:
                os._exit(0)

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
        return {"pid": os.getpid(), "method": self.method}, b""

    # -- files (see _files.py) -------------------------------------------------------
    def op_write(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        self.files.write(msg.header["path"], msg.blob)
        return {}, b""

    def op_read(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        return {}, self.files.read(msg.header["path"], self.limits["max_file_mb"] << 20)

    def op_listdir(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        return {"names": self.files.listdir(msg.header["path"])}, b""

    # -- the persistent interpreter -------------------------------------------------
    def op_python(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        cap = self.limits["max_output_bytes"]
        timeout = float(msg.header["timeout"])
        for fd in (1, 2):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        out, err = _cell.CappedStream(1, cap), _cell.CappedStream(2, cap)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        limit, code, start = None, 0, time.monotonic()
        children_before = _procs.children()
        cpu_now = int(resource.getrusage(resource.RUSAGE_SELF).ru_utime
                      + resource.getrusage(resource.RUSAGE_SELF).ru_stime)
        _, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
        try:
            room = self.tree_processes() + self.limits["max_processes"]
            resource.setrlimit(resource.RLIMIT_NPROC, (min(nproc_hard, room), nproc_hard))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_now + self.limits["cpu_seconds"],
                                                     resource.RLIM_INFINITY))
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                _cell.execute(msg.header["code"], self.namespace.__dict__)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                err.write(f"{e.code}\n")
        except _cell.Stop as e:
            limit, code = e.limit, 1
            err.write(_cell.user_traceback(e, __file__, timeout))
        except BaseException as e:  # noqa: B036 - user code may raise anything
            code = 1
            if isinstance(e, MemoryError):
                limit = "memory"
            err.write(_cell.user_traceback(e, __file__))
        finally:
            sys.stdout, sys.stderr = saved
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc_hard, nproc_hard))
            resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)
        if limit is not None or not self.limits["background"]:
            self._kill_spawned_since(children_before)
        return {
            "stdout": _cell.read_capture(1, cap), "stderr": _cell.read_capture(2, cap),
            "exit_code": code,
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
        _procs.kill_until_gone(lambda: _procs.descendants(os.getpid(), children_before),
                               reap=True)

    def _branch_namespaces(self) -> int:
        """What a new branch takes apart from its parent beyond its root and pid
        namespace: its hostname, its SysV IPC and POSIX queues, and (unless the tree
        has the host's network) its network namespace, where abstract unix sockets
        live. Each would otherwise be a channel between branches."""
        network = 0 if self.limits["network"] else L.CLONE_NEWNET
        return L.CLONE_NEWNS | L.CLONE_NEWUTS | L.CLONE_NEWIPC | network

    def _own_fds(self, *more: int) -> set[int]:
        """The worker's descriptors, which no agent code opened."""
        return {0, 1, 2, self.chan.fileno(), self.keeper.fileno(), self.pidns, *more}

    # -- shell commands -------------------------------------------------------------
    def op_run(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes]:
        return _commands.run(msg.header["cmd"], float(msg.header["timeout"]), self.limits,
                             self.pidns, self.tree_processes()), b""

    def tree_processes(self) -> int:
        """The tree's process count, which only the keeper can see: RLIMIT_NPROC counts
        every process of the tree's uid, and a call may add `max_processes` to them."""
        return int(_wire.ask(self.keeper, {"op": "count"}).header["processes"])

    # -- forking --------------------------------------------------------------------
    def op_fork(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes] | None:
        """The keeper freezes this branch and makes both roots; the child is forked into a
        pid namespace of its own (_nest.py), enters its root and leaves behind what would
        join it to another branch (_inherit.py). That namespace is nested in this one, so
        this worker and what it starts could reach the child: processes earlier calls
        left running end here, and before its next call of any other kind this worker
        moves on (op_continue)."""
        (chan_fd,) = msg.fds
        if self.limits["background"]:
            self._end_background()
        roots = _wire.ask(self.keeper, {"op": "fork"})
        child_root, child_keeper = roots.fds[-2:]
        try:
            if roots.header["reroot"]:
                self._enter(roots.fds[0])
            regions = _inherit.shared_memory()
            pid, depth, init_ready = _nest.fork_branch(self.depth, self.pidns)
        except BaseException:
            for fd in (child_root, child_keeper):
                _close(fd)
            raise
        if pid:
            os.close(child_root)
            os.close(child_keeper)
            self.children.add(pid)
            return {"pid": pid, "shared_namespace": depth == self.depth}, b""
        self._become(chan_fd, child_keeper, child_root, depth, init_ready, regions)
        return None

    def op_continue(self, msg: _wire.Message) -> tuple[dict[str, Any], bytes] | None:
        """Go on in a new worker whose pid namespace sits beside the children's, so this
        branch's later code can reach none of them; this worker then exits. Past the
        kernel's nesting limit there is no such namespace, and the worker stays."""
        (chan_fd,) = msg.fds
        if not self.depth + 1 <= _nest.MAX_LEVEL:
            return {"moved": False, "shared_namespace": True}, b""
        pid, depth, init_ready = _nest.fork_branch(self.depth, self.pidns)
        if pid:
            self.retired = True
            return {"moved": True, "shared_namespace": depth == self.depth}, b""
        self._become(chan_fd, None, None, depth, init_ready, [])
        return None

    def _end_background(self) -> None:
        """Kill what earlier calls left running (background=True): it shares this
        worker's pid namespace, where a fork nests the child's."""
        own = os.readlink("/proc/self/ns/pid")
        _procs.kill_until_gone(lambda: [pid for pid in _procs.descendants(os.getpid())
                                        if _procs.pid_ns(pid) == own], reap=True)

    def _enter(self, root: int, namespaces: int = 0) -> None:
        """Swap roots (after taking `namespaces`), keeping what agent code holds open on
        the old one open on the new one."""
        held = _inherit.held_on_root(self._own_fds(root))
        if namespaces:
            L.unshare(namespaces)
        _keeper.enter(root)
        _inherit.reopen(held)

    def _become(self, chan_fd: int, keeper: int | None, root: int | None, depth: int,
                init_ready: int, regions: list[_inherit.Region]) -> None:
        """In a worker just forked: the child of a fork, given its `keeper` connection and
        `root`, which leaves behind what would join it to another branch (_inherit.py);
        or this branch's next worker (neither given), heir to everything of the old one,
        which is gone, but its /proc, where the children's processes are in view."""
        self.chan.close()
        os.close(self.pidns)
        self.chan = socket.socket(fileno=chan_fd)
        self.depth = depth
        self.children = set()
        try:
            os.setpgid(0, 0)
            L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)  # not inherited across fork
            if keeper is None or root is None:
                _inherit.renew_proc(self._own_fds(init_ready))
            else:
                self.keeper.close()
                self.keeper = socket.socket(fileno=keeper)
                self._enter(root, self._branch_namespaces())
                _inherit.disconnect(self._own_fds(init_ready))
                _inherit.privatize(regions)
                _reseed()
            self.pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            self._new_capture()
            _nest.await_init(init_ready)
        except BaseException as e:  # noqa: B036 - report, then leave
            _wire.send(self.chan, {"error": f"fork setup failed: {e}"})
            os._exit(1)
        _wire.send(self.chan, {"hello": os.getpid(), "method": self.method})


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


def main() -> None:
    cfg = json.loads(sys.argv[1])
    chan = socket.socket(fileno=cfg["chan_fd"])
    keeper, depth, method = _tree.start(cfg, chan)
    signal.signal(signal.SIGALRM, _cell.raise_stop("timeout"))
    signal.signal(signal.SIGXCPU, _cell.raise_stop("cpu"))
    worker = Worker(chan, keeper, depth, method, cfg["limits"])
    _wire.send(chan, {"hello": os.getpid(), "method": worker.method})
    worker.serve()


if __name__ == "__main__":
    main()
