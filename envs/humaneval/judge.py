"""HumanEval's judge: runs in a fresh grading sandbox, stdlib only, and prints one verdict.

The host starts it as `exec python3 -I -S judge.py`, so the judge, not bash, is pid 1 of
the command's pid namespace and the only process holding the command's stdout. Nothing
an answer does can forge a pass, because the answer never runs in this process:

- The judge first makes itself non-dumpable, so processes of its uid (the answer's) can
  neither ptrace it nor open its /proc files (fds, memory, environment). It then reads
  the job (the problem's prompt and test, and the verdict key) and deletes its file.
- Only after that does the answer run, in a child (`python3 -I judge.py serve NAME`) that
  has no stdout of ours, no key and no test. `check()` runs here, on the prompt's own
  helpers, and calls the answer through a pipe; only plain values come back (JSON, with
  tags for tuples and dicts), so an object whose `__eq__` always holds is refused.
- The verdict line starts with the key, which the answer never saw.

So printing a pass line, exiting early, or redefining a helper the test relies on (the
`poly` of HumanEval/32) earns nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from typing import Any

JOB = "job.json"
PROBLEM = "problem.py"
ANSWER = "answer.py"
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
def serve(name: str) -> None:
    """In the child: run the prompt, then the answer, then answer calls until EOF.

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

    namespace: dict[str, Any] = {"__name__": "answer"}
    for path in (PROBLEM, ANSWER):
        with open(path, encoding="utf-8") as f:
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
    function = namespace.get(name)
    if not callable(function):
        send(json.dumps({"error": f"the answer does not define {name}()"}))
        return
    send(json.dumps({"ready": True}))
    for line in requests:
        send(reply(function, decode(json.loads(line))))


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
class Candidate:
    """What `check()` gets as the function: each call is a round trip to the child."""

    def __init__(self, child: subprocess.Popen[bytes], name: str) -> None:
        self.child = child
        self.name = name
        self.last = ""  # the last call and its value, for the verdict

    def __call__(self, *args: Any) -> Any:
        call = f"{self.name}({', '.join(short(a) for a in args)})"
        self.last = ""
        try:
            self.child.stdin.write(json.dumps(encode(list(args))).encode() + b"\n")
            self.child.stdin.flush()
        except OSError:
            raise CandidateFailed(self._gone()) from None
        message = self.receive()
        if "value" not in message:
            raise CandidateFailed(f"{call} {message.get('error', 'gave no value')}")
        try:
            value = decode(message["value"])
        except (ValueError, TypeError, RecursionError):
            raise CandidateFailed(f"{call} gave a reply that is not a value") from None
        self.last = f"{call} returned {short(value)}"
        return value

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

    def _gone(self) -> str:
        try:
            code = self.child.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "the answer's process closed its pipe to the judge"
        how = f"was killed ({signal.strsignal(-code)})" if code < 0 else f"exited ({code})"
        return f"the answer's process {how} before check() was done"


def explain(exc: Exception, test: str, last: str) -> str:
    """Which line of the test failed, how, and what the answer last returned."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "test.py"]
    where = f" at `{test.splitlines()[frames[-1].lineno - 1].strip()}`" if frames else ""
    what = describe(exc) if str(exc) or not isinstance(exc, AssertionError) else "assertion failed"
    text = f"{what}{where}"
    return f"{text}; the last call {last}" if last else text


def judge(job: dict[str, Any]) -> dict[str, Any]:
    """Start the answer's process, then run the test's `check()` here against it."""
    name = job["entry_point"]
    child = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), "serve", name],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
    candidate = Candidate(child, name)
    try:
        ready = candidate.receive()
        if "ready" not in ready:
            raise CandidateFailed(str(ready.get("error", "the answer did not start")))
        namespace: dict[str, Any] = {"__name__": "problem"}
        exec(compile(job["prompt"], PROBLEM, "exec"), namespace)
        namespace[name] = candidate  # HumanEval/33's test calls the function by its name
        exec(compile(job["test"], "test.py", "exec"), namespace)
        namespace["check"](candidate)
    except CandidateFailed as exc:
        return {"passed": False, "reason": f"failed: {exc}"[:REASON_LIMIT]}
    except Exception as exc:  # an assertion, or whatever the test raised on the values it got
        return {"passed": False,
                "reason": f"failed: {explain(exc, job['test'], candidate.last)}"[:REASON_LIMIT]}
    finally:
        child.kill()
        child.wait()
    return {"passed": True, "reason": f"passed: check({name}) returned without an error"}


def secure() -> None:
    """Non-dumpable, so the answer's processes (same uid) cannot reach into this one."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2])
        return
    secure()
    with open(JOB, encoding="utf-8") as f:
        job = json.load(f)
    os.unlink(JOB)
    verdict = judge(job)
    sys.stdout.write(f"{job['key']} {json.dumps(verdict)}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
