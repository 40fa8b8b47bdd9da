"""The judge: runs in a fresh grading sandbox, stdlib only, and prints one keyed verdict.

The host starts it as `exec python3 -I -S judge.py`, so the judge, not bash, is pid 1 of
the command's pid namespace and the only process holding the command's stdout. Nothing
an answer does can forge a pass, because the answer never runs in this process:

- The judge first makes itself non-dumpable, so processes of its uid (the answer's) can
  neither ptrace it nor open its /proc files (fds, memory, environment). It then reads
  the job (the trusted tests, the names of the functions they call, and the verdict key)
  and deletes its file. `-I -S`: nothing in the work dir or a site dir is on its path.
- Only after that does the answer run, in a child (`python3 -I judge.py serve`) that is
  told only which files to run and which functions to serve: it has no stdout of ours,
  no key and no tests. The tests run here, and each call of an answer's function is a
  round trip through a pipe that carries only plain values (JSON, with tags for tuples
  and dicts), so an object whose `__eq__` always holds is refused, and nothing the
  answer runs can patch an assertion, a helper the tests use, or the tests themselves.
  That process is wholly the answer's (it may patch its own json, or exit), but all it
  can send is what its functions could have returned anyway: plain values, or nothing.
- The verdict line starts with the key, which the answer never saw; a test passes only
  by returning here, so printing a pass line or exiting early earns nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
import types
from typing import Any

JOB = "job.json"
REPLY_LIMIT = 1 << 20  # bytes of one reply from the answer's process
REASON_LIMIT = 1500
PR_SET_DUMPABLE = 4
PLAIN = "None, bool, int, float, str, list, tuple or dict"


class CandidateFailed(BaseException):
    """The answer gave no value. Not an Exception, so no `except Exception` in a test hides it."""


# -- plain values over the pipe -------------------------------------------------------
def encode(value: Any) -> Any:
    """A JSON-ready form of a plain value; tuples and dicts are tagged objects."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"a value of type {type(value).__name__}, not a plain value ({PLAIN})")


def decode(data: Any) -> Any:
    """The value `encode` made; anything else is a ValueError. Builds only builtin types."""
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(v) for v in data]
    if type(data) is dict and len(data) == 1 and type(next(iter(data.values()))) is list:
        ((tag, items),) = data.items()
        if tag == "tuple":
            return tuple(decode(v) for v in items)
        if tag == "dict" and all(type(p) is list and len(p) == 2 for p in items):
            return {decode(k): decode(v) for k, v in items}
    raise ValueError("not an encoded value")


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- the answer's side ----------------------------------------------------------------
def serve() -> None:
    """In the child: run the answer's files as one module, then answer calls until EOF.

    The pipe moves off fds 0 and 1 first, so what the answer prints goes to /dev/null.
    """
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    def send(line: str) -> None:
        replies.write(line.encode() + b"\n")
        replies.flush()

    load = json.loads(requests.readline())
    namespace: dict[str, Any] = {"__name__": load["module"]}
    for path in load["files"]:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
        try:
            code = compile(source, path, "exec")
        except SyntaxError as exc:
            where = f" at `{exc.text.strip()}`" if exc.text and exc.text.strip() else ""
            send(json.dumps({"error": f"syntax error in the answer: {exc.msg}{where}"}))
            return
        try:
            exec(code, namespace)
        except Exception as exc:
            send(json.dumps({"error": f"running the answer raised {describe(exc)}"}))
            return
    functions = {name: namespace.get(name) for name in load["functions"]}
    missing = [name for name, function in functions.items() if not callable(function)]
    if missing:
        send(json.dumps({"error": f"the answer does not define {missing[0]}()"}))
        return
    send(json.dumps({"ready": True}))
    for line in requests:
        request = json.loads(line)
        send(reply(functions[request["function"]], decode(request["args"])))


def reply(function: Any, args: list[Any]) -> str:
    """One call's reply line: the encoded value, or why there is none."""
    try:
        result = function(*args)
    except Exception as exc:
        return json.dumps({"error": f"raised {describe(exc)}"})
    try:
        return json.dumps({"value": encode(result)})
    except TypeError as exc:
        return json.dumps({"error": f"returned {exc}"})
    except Exception as exc:  # noqa: BLE001 - e.g. an int too long to print, a deep list
        return json.dumps({"error": f"returned a value the judge cannot read ({describe(exc)})"})


# -- the judge's side -----------------------------------------------------------------
class Answer:
    """The answer's process, seen from the judge; `last` is the last call and its value."""

    def __init__(self) -> None:
        self.child = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), "serve"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
        self.last = ""

    def start(self, files: list[str], module: str, functions: list[str]) -> None:
        self.send({"files": files, "module": module, "functions": functions})
        ready = self.receive()
        if "ready" not in ready:
            raise CandidateFailed(str(ready.get("error", "the answer did not start")))

    def call(self, name: str, args: tuple[Any, ...]) -> Any:
        call = f"{name}({', '.join(short(a) for a in args)})"
        self.last = ""
        self.send({"function": name, "args": encode(list(args))})
        message = self.receive()
        if "value" not in message:
            raise CandidateFailed(f"{call} {message.get('error', 'gave no value')}")
        try:
            value = decode(message["value"])
        except (ValueError, TypeError, RecursionError):
            raise CandidateFailed(f"{call} gave a reply that is not a value") from None
        self.last = f"{call} returned {short(value)}"
        return value

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.child.stdin.write(json.dumps(message).encode() + b"\n")
            self.child.stdin.flush()
        except OSError:
            raise CandidateFailed(self._gone()) from None

    def receive(self) -> dict[str, Any]:
        line = self.child.stdout.readline(REPLY_LIMIT + 1)
        if not line:
            raise CandidateFailed(self._gone())
        if len(line) > REPLY_LIMIT:
            raise CandidateFailed(f"output limit: the answer sent over {REPLY_LIMIT} bytes at once")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if type(message) is not dict:
            raise CandidateFailed("the answer's process wrote something that is not a reply")
        return message

    def close(self) -> None:
        self.child.kill()
        self.child.wait()

    def _gone(self) -> str:
        try:
            code = self.child.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "the answer's process closed its pipe to the judge"
        how = f"was killed ({signal.strsignal(-code)})" if code < 0 else f"exited ({code})"
        return f"the answer's process {how} before the tests were done"


def candidate(answer: Answer, name: str) -> Any:
    """What the tests get as the function `name`: each call is a round trip to the child."""

    def call(*args: Any) -> Any:
        return answer.call(name, args)

    call.__name__ = call.__qualname__ = name
    return call


def explain(exc: Exception, suite: dict[str, str], last: str) -> str:
    """Which line of the tests failed, how, and what the answer last returned.

    The line comes from the job's text, not the file of that name in the work dir, which
    the answer may have written.
    """
    numbers = [line for frame, line in traceback.walk_tb(exc.__traceback__)
               if frame.f_code.co_filename == suite["path"]]
    where = f" at `{suite['text'].splitlines()[numbers[-1] - 1].strip()}`" if numbers else ""
    what = describe(exc) if str(exc) or not isinstance(exc, AssertionError) else "assertion failed"
    text = f"{what}{where}"
    return f"{text}; the last call {last}" if last else text


def failed(why: str) -> dict[str, Any]:
    return {"passed": False, "reason": f"failed: {why}"[:REASON_LIMIT]}


def run_test(call: str, namespace: dict[str, Any], suite: dict[str, str],
             answer: Answer) -> dict[str, Any]:
    """One test: evaluate its call; it passes if that returns at all."""
    answer.last = ""
    try:
        eval(call, namespace)
    except CandidateFailed as exc:
        return failed(str(exc))
    except Exception as exc:  # an assertion, or whatever the test raised on the values it got
        return failed(explain(exc, suite, answer.last))
    return {"passed": True, "reason": f"passed: {call} returned without an error"}


def setup(job: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """Start the answer, then load the tests: the namespace their calls run in."""
    answer.start(list(job["files"]), job["module"], job["functions"])
    functions = {name: candidate(answer, name) for name in job["functions"]}
    module = types.ModuleType(job["module"])
    vars(module).update(functions)
    sys.modules[job["module"]] = module  # so the tests can import the functions
    namespace: dict[str, Any] = {"__name__": "tests"}
    for source in job["prelude"]:
        exec(compile(source["text"], source["path"], "exec"), namespace)
    namespace.update(functions)  # the answer's, not the prelude's stubs
    exec(compile(job["suite"]["text"], job["suite"]["path"], "exec"), namespace)
    return namespace


def judge(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every test's verdict, each run here against the answer's process, in order."""
    answer = Answer()
    try:
        try:
            namespace = setup(job, answer)
        except CandidateFailed as exc:
            return {test: failed(str(exc)) for test in job["tests"]}
        except Exception as exc:  # the tests themselves did not load
            return {test: failed(f"the tests did not load: {describe(exc)}")
                    for test in job["tests"]}
        return {test: run_test(call, namespace, job["suite"], answer)
                for test, call in job["tests"].items()}
    finally:
        answer.close()


def secure() -> None:
    """Non-dumpable, so the answer's processes (same uid) cannot reach into this one."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve()
        return
    secure()
    with open(JOB, encoding="utf-8") as f:
        job = json.load(f)
    os.unlink(JOB)
    verdict = {"results": judge(job)}
    sys.stdout.write(f"{job['key']} {json.dumps(verdict)}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
