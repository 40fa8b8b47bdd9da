"""Shared by the policy tests: ordinary text ids, stop strings that decode, and a
stand-in for a remote OpenAI-compatible server.

`DEVICE` is where the transformers backend runs: TREEGYM_TEST_DEVICE, default cpu
(scripts/gpu_check.sh sets cuda).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEVICE = os.environ.get("TREEGYM_TEST_DEVICE", "cpu")


def prompt(tokenizer, n: int, salt: str = "") -> list[int]:
    """`n` ids of maze-like text; a different `salt` gives a different prompt."""
    text = f"{salt}Walk the maze: north, east, then look around. " * 60
    ids = tokenizer.encode(text, add_special_tokens=False)[:n]
    assert len(ids) == n
    return ids


def clean_stop(tokenizer, ids: list[int]) -> str:
    """Two printable ASCII chars the text reaches early: no half-decoded UTF-8 bytes."""
    for k in range(2, len(ids)):
        tail = tokenizer.decode(ids[:k])[-2:]
        if len(tail) == 2 and tail.isascii() and tail.isprintable():
            return tail
    raise AssertionError("no printable stop string in the free run")


class RemoteStandIn(ThreadingHTTPServer):
    """Stands in for a remote OpenAI-compatible API (a hosted one, outside this machine)
    on 127.0.0.1, for the failure modes a real `vllm serve` can't be made to show.

    It lists `model`, answers /v1/completions with one sampled id in the shape vLLM
    gives (token ids, log-probs, finish reason, usage) after `delay` seconds, or with the
    next of `failures` (HTTP statuses) while any are left, and has no other route, so
    weight updates get 404. `completions` counts the completion requests it saw.
    """

    def __init__(self, model: str, failures: Sequence[int] = (), delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _StandInHandler)
        self.model, self.failures, self.delay = model, list(failures), delay
        self.completions = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def __enter__(self) -> RemoteStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def next_status(self) -> int:
        """Count a completion request and pick its status, under a lock: requests of one
        `generate` call arrive together."""
        with self._lock:
            self.completions += 1
            return self.failures.pop(0) if self.failures else 200


class _StandInHandler(BaseHTTPRequestHandler):
    server: RemoteStandIn

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a client that timed out hung up before a slow answer was written

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        if self.path == "/v1/models":
            self._reply(200, {"data": [{"id": self.server.model}]})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or "{}")
        if self.path != "/v1/completions":
            self._reply(404, {"error": "not found"})
            return
        status = self.server.next_status()
        time.sleep(self.server.delay)
        if status != 200:
            self._reply(status, {"error": f"stand-in failure {status}"})
            return
        token = 5
        self._reply(200, {
            "choices": [{
                "token_ids": [token],
                "logprobs": {
                    "tokens": [f"token_id:{token}"],
                    "token_logprobs": [-0.5],
                    "top_logprobs": [{f"token_id:{token}": -0.5, "token_id:6": -1.2}],
                },
                "finish_reason": "length",
            }],
            "usage": {
                "prompt_tokens": len(request.get("prompt", [])),
                "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        })  # fmt: skip

    def log_message(self, *args: object) -> None:
        pass
