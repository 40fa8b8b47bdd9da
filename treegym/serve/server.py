"""`treegym serve`: a registered env behind OpenEnv's HTTP and WebSocket routes, plus fork.

The routes are OpenEnv's (`/health`, `/schema`, `/metadata`, `/reset`, `/step`, `/state`,
`/ws`), so OpenEnv clients drive a treegym env unchanged. Where OpenEnv's HTTP `/reset`
and `/step` each use a throwaway env, here `/reset` opens a session and says its id in
`observation.metadata.session_id`, which `/step`, `/state`, `/fork` and `/close` take:
a forked world is only useful if it outlives the request that made it. A `/ws`
connection owns one session; `/ws?session_id=ID` drives a session made by a fork.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..errors import ConfigError
from ..registry import env_info
from .protocol import (
    ErrorCode,
    ResetData,
    ServerMetadata,
    SessionRequest,
    SessionState,
    StepPayload,
    StepRequest,
    TextAction,
    TextObservation,
    WSMessage,
    WSReply,
    error_reply,
)
from .sessions import ServeConfig, Session, SessionError, SessionTable

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_HTTP_STATUS = {ErrorCode.CAPACITY_REACHED: 503, ErrorCode.SESSION_ERROR: 404,
                ErrorCode.FACTORY_ERROR: 500, ErrorCode.EXECUTION_ERROR: 500,
                ErrorCode.VALIDATION_ERROR: 422, ErrorCode.UNAUTHORIZED: 401,
                ErrorCode.MESSAGE_TOO_LARGE: 413}


def check_bind(config: ServeConfig) -> None:
    """Refuse a bind beyond loopback without a token: anyone who reaches the port could run
    code in its sandboxes."""
    if config.host not in LOOPBACK and not config.token:
        raise ConfigError(
            f"refusing to bind {config.host} without a token: anyone who can reach it could "
            "run code in its sandboxes. Pass --token T (or set TREEGYM_SERVE_TOKEN), or bind "
            "127.0.0.1")


def _authorized(config: ServeConfig, header: str | None, query: str | None) -> bool:
    if not config.token:
        return True
    given = query or (header or "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), config.token.encode())


def _refusal(exc: SessionError) -> JSONResponse:
    return JSONResponse(status_code=_HTTP_STATUS.get(exc.code, 400),
                        content={"detail": str(exc), "code": exc.code.value})


def metadata(config: ServeConfig) -> ServerMetadata:
    info = env_info(config.env_id)
    from .. import __version__

    return ServerMetadata(
        name=config.env_id, description=info.description, version=__version__,
        author="treegym", env_options=config.env_options,
        max_turns=config.env_options.get("max_turns", info.max_turns or 0),
        max_sessions=config.max_sessions, idle_timeout_s=config.idle_timeout_s,
        max_message_bytes=config.max_message_bytes)


def create_app(config: ServeConfig) -> FastAPI:
    """The app for `config`; its lifespan closes every session's sandbox on shutdown."""
    table = SessionTable(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(table.reap())
        try:
            yield
        finally:
            reaper.cancel()
            table.close_all()

    app = FastAPI(title=f"treegym serve {config.env_id}", lifespan=lifespan)
    app.state.table = table
    info = metadata(config)

    @app.middleware("http")
    async def guard(request: Request,
                    call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not _authorized(config, request.headers.get("authorization"),
                           request.query_params.get("token")):
            return _refusal(SessionError(ErrorCode.UNAUTHORIZED, "missing or wrong token: "
                                         "send the server's --token as 'Authorization: "
                                         "Bearer T'"))
        size = int(request.headers.get("content-length") or 0)
        if size > config.max_message_bytes:
            return _refusal(_too_large(size, config))
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/metadata")
    async def get_metadata() -> ServerMetadata:
        return info

    @app.get("/schema")
    async def schema() -> dict[str, Any]:
        return {"action": TextAction.model_json_schema(),
                "observation": TextObservation.model_json_schema(),
                "state": SessionState.model_json_schema()}

    async def guarded(work: Awaitable[Any]) -> Any:
        try:
            return await work
        except SessionError as exc:
            return _refusal(exc)

    @app.post("/reset")
    async def reset(data: ResetData | None = None) -> StepPayload:
        data = data or ResetData()

        async def run() -> StepPayload:
            session = (table.get(data.session_id) if data.session_id
                       else await table.create())
            return await table.reset(session, data.seed, data.episode_id, data.options)
        return await guarded(run())

    @app.post("/step")
    async def step(request: StepRequest) -> StepPayload:
        if request.session_id is None:
            return _refusal(SessionError(
                ErrorCode.VALIDATION_ERROR, "POST /step needs 'session_id': the one POST "
                "/reset returned in observation.metadata.session_id (or use /ws)"))
        return await guarded(_step(table, request.session_id, request.action.message))

    @app.get("/state")
    async def state(session_id: str | None = None) -> SessionState:
        if session_id is None:
            return table.state(None)
        return await guarded(_state(table, session_id))

    @app.post("/fork")
    async def fork(request: SessionRequest) -> dict[str, str]:
        async def run() -> dict[str, str]:
            child = await table.fork(table.get(request.session_id))
            return {"session_id": child.id}
        return await guarded(run())

    @app.post("/close")
    async def close(request: SessionRequest) -> dict[str, bool]:
        await table.close(request.session_id)
        return {"closed": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await _ws_session(websocket, table)

    return app


def _too_large(size: int, config: ServeConfig) -> SessionError:
    return SessionError(ErrorCode.MESSAGE_TOO_LARGE,
                        f"the message is {size} bytes; this server takes at most "
                        f"{config.max_message_bytes} (--max-message-bytes); send a shorter "
                        "action")


async def _step(table: SessionTable, session_id: str, action: str) -> StepPayload:
    return await table.step(table.get(session_id), action)


async def _state(table: SessionTable, session_id: str) -> SessionState:
    return table.state(table.get(session_id))


async def _ws_session(websocket: WebSocket, table: SessionTable) -> None:
    """One /ws connection: its session lives as long as the connection, and goes with it."""
    config = table.config
    if not _authorized(config, websocket.headers.get("authorization"),
                       websocket.query_params.get("token")):
        await websocket.close(code=1008, reason="missing or wrong token: send the server's "
                              "--token as 'Authorization: Bearer T'")
        return
    await websocket.accept()
    session: Session | None = None
    try:
        wanted = websocket.query_params.get("session_id")
        session = table.get(wanted) if wanted else await table.create()
        if session.attached:
            session = None
            raise SessionError(ErrorCode.SESSION_ERROR, f"session {wanted!r} is already "
                               "driven by another connection; fork it instead")
        session.attached = True
        while True:
            raw = await websocket.receive_text()
            reply = await _answer(table, session, raw)
            if reply is None:  # a close: OpenEnv's client sends it and hangs up, unanswered
                break
            await websocket.send_text(reply.model_dump_json())
    except WebSocketDisconnect:
        pass
    except SessionError as exc:
        await websocket.send_text(error_reply(exc.code, str(exc)).model_dump_json())
    finally:
        if session is not None:
            await table.close(session.id, "its connection closed")
        try:
            await websocket.close()
        except (RuntimeError, WebSocketDisconnect):  # the client hung up first
            pass


async def _answer(table: SessionTable, session: Session, raw: str) -> WSReply | None:
    """The reply to one message, None for a close; every bad message gets an error that
    names the way out."""
    if len(raw.encode()) > table.config.max_message_bytes:
        exc = _too_large(len(raw.encode()), table.config)
        return error_reply(exc.code, str(exc))
    try:
        message = WSMessage.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        return error_reply(ErrorCode.INVALID_JSON, f"Invalid JSON: {exc}; send one JSON object "
                           'such as {"type": "reset", "data": {"seed": 0}}')
    except ValidationError as exc:
        kind = "unknown message type" if any(e["loc"] == ("type",) for e in exc.errors()) \
            else "invalid message"
        return error_reply(ErrorCode.UNKNOWN_TYPE if kind.startswith("unknown")
                           else ErrorCode.VALIDATION_ERROR,
                           f"{kind}: {exc.errors()[0]['msg']}; send type reset, step, state, "
                           "close or fork", errors=exc.errors(include_url=False))
    if session.id not in table.sessions:
        why = table.closed_why.get(session.id, "it was closed")
        return error_reply(ErrorCode.SESSION_ERROR, f"this session is gone: {why}; open a new "
                           "/ws connection and reset")
    try:
        match message.type:
            case "reset":
                data = ResetData.model_validate(message.data)
                payload = await table.reset(session, data.seed, data.episode_id, data.options)
                return WSReply(type="observation", data=payload.model_dump(mode="json"))
            case "step":
                action = TextAction.model_validate(message.data)
                payload = await table.step(session, action.message)
                return WSReply(type="observation", data=payload.model_dump(mode="json"))
            case "state":
                return WSReply(type="state", data=table.state(session).model_dump())
            case "fork":
                child = await table.fork(session)
                return WSReply(type="fork", data={"session_id": child.id})
            case _:  # "close", the one type left
                return None
    except ValidationError as exc:
        return error_reply(ErrorCode.VALIDATION_ERROR,
                           f"invalid {message.type} data: {exc.errors()[0]['msg']} at "
                           f"{'.'.join(map(str, exc.errors()[0]['loc']))}; a step's data is "
                           '{"message": "<action text>"}', errors=exc.errors(include_url=False))
    except SessionError as exc:
        return error_reply(exc.code, str(exc))


def run(config: ServeConfig, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM, then close every session's sandbox.

    The socket is bound here, before uvicorn starts, so that port 0 can be announced as
    the port it became, and a refused bind fails before anything is served.
    """
    import socket

    import uvicorn

    check_bind(config)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.listen(128)  # connections queue from here on, so the announced URL already works
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(
        create_app(config), log_level="warning", lifespan="on",
        # larger than the cap, so an oversized message gets the cap's own error, not a drop
        ws_max_size=4 * config.max_message_bytes, timeout_graceful_shutdown=5))
    announce(f"ws://{host}:{port}")
    server.run(sockets=[sock])
