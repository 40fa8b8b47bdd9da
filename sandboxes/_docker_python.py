"""The agent's persistent Python interpreter in a commit-backend container; stdlib only.

The interpreter is a forked child of the worker, demoted to the agent user, so agent code
can neither signal nor starve the worker: a wedged or killed interpreter is reported and
replaced (its variables lost) instead of taking the sandbox down. It hears code and
answers over two pipes, in the worker's frames; its stdout and stderr are two more.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import os
import resource
import select
import signal
import sys
import time
import traceback

import _wire
from _docker_agent import Agent, Pump, counter_limit, counters, exit_limit, kill_tree, reader, recv

# What the worker accepts from an interpreter, which runs agent code: a short header, no blob.
REPLY = _wire.Bounds(max_header=4096, max_blob=0, fds=False)
REPLY_WAIT = 0.5  # seconds a started reply may take to arrive in full

# How long an interrupted interpreter gets to unwind before it is killed and replaced.
INTERRUPT_GRACE = 1.0


class CpuLimit(BaseException):
    """Raised in the interpreter by SIGXCPU, so a CPU-bound cell stops but state survives."""


def repl(req_fd: int, rep_fd: int, cpu: int) -> None:
    """The interpreter's loop; runs as the agent, in the child."""

    def on_xcpu(signum: int, frame: object) -> None:
        raise CpuLimit(f"CPU limit of {cpu} s per call reached")

    signal.signal(signal.SIGXCPU, on_xcpu)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ns: dict = {"__name__": "__main__", "__builtins__": builtins}
    requests = reader(req_fd)
    cell = 0
    while True:
        message = recv(requests)
        if message is None:
            os._exit(0)
        req = message[0]
        _wire.write(rep_fd, {"started": True})
        cell += 1
        name = f"<cell {cell}>"
        code = req["code"]
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        used = sum(os.times()[:2])
        resource.setrlimit(resource.RLIMIT_CPU, (int(used) + cpu + 1, resource.RLIM_INFINITY))
        reply: dict = {"exit_code": 0, "limit": None}
        try:
            tree = ast.parse(code, name, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, name, "exec"), ns)
            if last is not None:
                value = eval(compile(last, name, "eval"), ns)
                if value is not None:
                    print(repr(value))
        except SystemExit as e:
            reply["exit_code"] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:  # noqa: BLE001 - the agent's error is reported, not raised
            reply["exit_code"] = 1
            if isinstance(e, MemoryError):
                reply["limit"] = "memory"
            elif isinstance(e, CpuLimit):
                reply["limit"] = "cpu"
            elif isinstance(e, KeyboardInterrupt):
                reply["limit"] = "timeout"
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        finally:
            resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - the agent may have replaced or closed it
                    pass
        _wire.write(rep_fd, reply)


class Interpreter:
    """One interpreter process and the four pipes to it."""

    def __init__(self, agent: Agent) -> None:
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                os.chdir(agent.workdir)
                agent.demote(cpu_limit=False)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in map(int, os.listdir("/proc/self/fd")):
                    if fd not in (0, 1, 2, req_r, rep_w):
                        try:
                            os.close(fd)
                        except OSError:
                            pass  # the directory listing's own fd
                sys.stdin = open(os.devnull)  # not the host stream the worker buffered
                os.environ.clear()
                os.environ.update(agent.env)
                sys.argv = [""]
                sys.path.insert(0, "")
                repl(req_r, rep_w, agent.cpu)
            finally:
                os._exit(1)
        self.pid = pid
        for fd in (req_r, rep_w, out_w, err_w):
            os.close(fd)

    def kill(self) -> None:
        kill_tree(self.pid)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # already reaped by the caller, which wanted its exit status
        for fd in (self.req_w, self.rep_r, self.out_r, self.err_r):
            os.close(fd)


class Call:
    """One submission of code to an interpreter, and what has come back from it."""

    def __init__(self, interp: Interpreter, code: str, deadline: float, cap: int) -> None:
        self.interp = interp
        self.started = False
        self.reply: dict | None = None
        self.lost = False
        self.forged = False
        self.pump = Pump(interp.out_r, interp.err_r, cap)
        self.replies = reader(interp.rep_r, wait=REPLY_WAIT)
        try:
            _wire.write(interp.req_w, {"code": code})
        except BrokenPipeError:
            self.lost = True
        self.timed_out = not self.pump.run(deadline, self.finished, interp.rep_r, grace=0)

    def finished(self) -> bool:
        while not self.done() and select.select([self.interp.rep_r], [], [], 0)[0]:
            try:
                message = recv(self.replies, REPLY)
            except _wire.WireError:
                self.forge()
                break
            if message is None:
                self.lost = True
            elif message[0] == {"started": True}:
                self.started = True
            elif _well_formed(message[0]):
                self.reply = message[0]
            else:
                self.forge()
        return self.done()

    def forge(self) -> None:
        """Agent code wrote to the reply pipe: the interpreter is not to be trusted."""
        kill_tree(self.interp.pid)
        self.lost = self.forged = True

    def done(self) -> bool:
        return self.lost or self.reply is not None

    def interrupt(self) -> None:
        """SIGINT keeps the interpreter's state if its code lets KeyboardInterrupt through."""
        os.kill(self.interp.pid, signal.SIGINT)
        deadline = time.monotonic() + INTERRUPT_GRACE
        if not self.pump.run(deadline, self.finished, self.interp.rep_r, 0):
            self.lost = True


def _well_formed(reply: dict) -> bool:
    return (set(reply) == {"exit_code", "limit"} and type(reply["exit_code"]) is int
            and reply["limit"] in (None, "memory", "cpu", "timeout"))


class Python:
    """The `python` op: runs a cell on the live interpreter, replacing it when it dies."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.interp = Interpreter(agent)

    def op(self, req: dict) -> dict:
        before = counters()
        deadline = time.monotonic() + req["timeout"]
        notes = ""
        call = Call(self.interp, req["code"], deadline, self.agent.cap)
        if call.lost and not call.started:
            # It died before this call (e.g. the agent's `kill -9 -1`): nothing ran, so run
            # it on a fresh interpreter.
            notes = self.restart("it was killed between calls")
            call = Call(self.interp, req["code"], deadline, self.agent.cap)
        if call.timed_out:
            call.interrupt()
        pump, interp = call.pump, call.interp
        stdout, stderr = pump.text(interp.out_r), notes + pump.text(interp.err_r)
        result = {"stdout": stdout, "stderr": stderr, "timed_out": call.timed_out,
                  "truncated": pump.truncated}
        if call.reply is not None:
            return {**result, "exit_code": call.reply["exit_code"],
                    "limit": call.reply["limit"] or counter_limit(before)}
        status = 0
        if not call.timed_out:
            _, raw = os.waitpid(interp.pid, 0)
            status = -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)
        why = ("it did not stop when interrupted" if call.timed_out
               else "its code wrote to the interpreter's reply pipe" if call.forged
               else f"it died ({status})")
        sep = "\n" if stderr and not stderr.endswith("\n") else ""
        result["stderr"] = stderr + sep + self.restart(why)
        limit = "timeout" if call.timed_out else exit_limit(status) or counter_limit(before)
        return {**result, "exit_code": 137 if call.timed_out else 1, "limit": limit}

    def restart(self, why: str) -> str:
        self.interp.kill()
        self.interp = Interpreter(self.agent)
        return f"[treegym: the interpreter was restarted because {why}; its variables are lost]\n"
