"""OpenEnv's own client (openenv-core, the real package) drives a treegym env unchanged."""

from __future__ import annotations

import json

import httpx
import pytest
from helpers import call

from treegym.errors import EpisodeError
from treegym.serve.child import ServerProcess as Server
from treegym.serve.child import serving

GenericEnvClient = pytest.importorskip("openenv.core.generic_client").GenericEnvClient


def test_generic_client_plays_a_pycalc_episode(pycalc_server: Server) -> None:
    with GenericEnvClient(base_url=pycalc_server.url).sync() as env:
        first = env.reset(seed=3)
        meta = first.observation["metadata"]
        assert first.done is False and first.reward is None
        assert "python" in [tool["function"]["name"] for tool in meta["tools"]]
        assert first.observation["text"] == meta["task"]["prompt"]
        shown = env.step({"message": call("python", code="x = 6 * 7\nprint(x)")})
        assert shown.observation["text"] == "42" and shown.done is False
        turn = shown.observation["metadata"]["turn"]
        assert turn["calls"][0]["name"] == "python" and turn["results"][0]["output"] == "42"
        kept = env.step({"message": call("python", code="print(x + 1)")})
        assert kept.observation["text"] == "43"  # the interpreter lives across steps
        state = env.state()
        assert state["step_count"] == 2 and state["env_id"] == "treegym/PyCalc-v0"
        answer = meta["task"]["answer"]
        done = env.step({"message": f"<answer>{answer}</answer>"})
        assert done.done is True and done.reward == 1.0
        with pytest.raises(RuntimeError, match="episode is over"):
            env.step({"message": call("python", code="print(1)")})


def test_http_routes_and_the_fork_extension(pycalc_server: Server) -> None:
    base = pycalc_server.http
    assert httpx.get(f"{base}/health").json() == {"status": "healthy"}
    meta = httpx.get(f"{base}/metadata").json()
    assert meta["fork"] is True and meta["name"] == "treegym/PyCalc-v0"
    schema = httpx.get(f"{base}/schema").json()
    assert schema["action"]["required"] == ["message"]
    reset = httpx.post(f"{base}/reset", json={"seed": 1}).json()
    sid = reset["observation"]["metadata"]["session_id"]
    step = httpx.post(f"{base}/step", json={"action": {"message": call("python", code="y=1")},
                                            "session_id": sid}).json()
    assert step["done"] is False
    child = httpx.post(f"{base}/fork", json={"session_id": sid}).json()["session_id"]
    for session, code in ((child, "y += 10; print(y)"), (sid, "print(y)")):
        out = httpx.post(f"{base}/step", json={"action": {"message": call("python", code=code)},
                                               "session_id": session}).json()
        assert out["observation"]["text"] == ("11" if session == child else "1")
    assert httpx.get(f"{base}/state", params={"session_id": child}).json()["step_count"] == 2
    for session in (sid, child):
        httpx.post(f"{base}/close", json={"session_id": session})
    gone = httpx.post(f"{base}/step", json={"action": {"message": "x"}, "session_id": sid})
    assert gone.status_code == 404 and "unknown session" in gone.json()["detail"]
    assert "it was closed" in gone.json()["detail"]
    no_session = httpx.post(f"{base}/step", json={"action": {"message": "x"}})
    assert no_session.status_code == 422 and "session_id" in no_session.json()["detail"]


def test_bad_messages_get_errors_that_name_the_way_out(pycalc_server: Server) -> None:
    from websockets.sync.client import connect

    with connect(f"{pycalc_server.url}/ws") as ws:
        def ask(raw: str) -> dict:
            ws.send(raw)
            return json.loads(ws.recv(timeout=30))

        bad = ask("{not json")
        assert bad["type"] == "error" and bad["data"]["code"] == "INVALID_JSON"
        unknown = ask(json.dumps({"type": "teleport"}))
        assert unknown["data"]["code"] == "UNKNOWN_TYPE" and "fork" in unknown["data"]["message"]
        early = ask(json.dumps({"type": "step", "data": {"message": "hi"}}))
        assert "before reset" in early["data"]["message"]
        assert ask(json.dumps({"type": "reset", "data": {"seed": 0}}))["type"] == "observation"
        shapeless = ask(json.dumps({"type": "step", "data": {"text": "hi"}}))
        assert shapeless["data"]["code"] == "VALIDATION_ERROR"
        assert '{"message": "<action text>"}' in shapeless["data"]["message"]
        huge = ask(json.dumps({"type": "step", "data": {"message": "x" * (2 << 20)}}))
        assert huge["data"]["code"] == "MESSAGE_TOO_LARGE" and "--max-message-bytes" in \
            huge["data"]["message"]
        # the session survived every bad message
        ok = ask(json.dumps({"type": "step", "data": {"message": call("python", code="print(2)")}}))
        assert ok["data"]["observation"]["text"] == "2"
    with connect(f"{pycalc_server.url}/ws?session_id=nope") as ws:
        reply = json.loads(ws.recv(timeout=30))
        assert reply["data"]["code"] == "SESSION_ERROR" and "unknown session 'nope'" in \
            reply["data"]["message"]


def test_unknown_env_id_is_refused_at_start() -> None:
    with pytest.raises(EpisodeError, match="did not start: .*unknown env id 'treegym/Nope-v0'"):
        with serving("treegym/Nope-v0"):
            pass
