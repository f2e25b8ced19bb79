"""The dashboard's API: `POST /api/OP` with a JSON body runs the wire op OP
(golemd/wire/ops/OP.py) as the Unix socket would: the same validation, the
same handler, the same error codes. One definition per operation stays one.

Body: the op's fields as JSON (`{"agent": "...", "idempotency_key": "..."}`).
Answer: `{"ok": true, "reply": REPLY}`, or `{"ok": false, "error": {"code",
"message"}}` with an HTTP status from STATUS. Bytes in a reply come as
`{"$bytes": BASE64}`.

Only the ops the dashboard offers are served (OPS): reading, and cancel,
interrupt, resume, simulate crash, delete, promise complete. Not stop,
reload, new or invoke: those stay with golemctl.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

from aiohttp import web

from golemd.model.errors import Code, GolemError
from golemd.server.context import OpContext, serve_op
from golemd.wire.ops.registry import validate_request

log = logging.getLogger("golemd.http")

OPS = frozenset({"status", "types", "list", "get", "invocations", "oplog", "promise_get",
                 "promise_list", "cancel", "interrupt", "resume", "simulate_crash", "delete",
                 "promise_complete"})

STATUS = {
    Code.BAD_REQUEST: 400, Code.INVALID_AGENT_ID: 400, Code.INVALID_ARGUMENTS: 400, Code.USAGE: 400,
    Code.AGENT_NOT_FOUND: 404, Code.NOT_FOUND: 404, Code.UNKNOWN_TYPE: 404, Code.UNKNOWN_METHOD: 404,
    Code.TOO_LATE: 409, Code.ALREADY_COMPLETED: 409, Code.AGENT_EXISTS: 409,
    Code.IDEMPOTENCY_CONFLICT: 409, Code.UNAUTHORIZED: 403, Code.TOO_LARGE: 413,
    Code.SHUTTING_DOWN: 503, Code.STORAGE_FULL: 507,
}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/{op}", run_op)


def to_json(value: Any) -> Any:
    """What json.dumps cannot take: bytes, and tuples (as lists, which it does)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    return str(value)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=to_json, ensure_ascii=False)


def error_response(err: GolemError) -> web.Response:
    code = err.code if isinstance(err.code, Code) else None
    return web.json_response({"ok": False, "error": {"code": str(err.to_wire()["code"]),
                                                     "message": err.message}},
                             status=STATUS.get(code, 500) if code else 500, dumps=dumps)


async def call_op(daemon: Any, op: str, fields: dict[str, Any]) -> Any:
    """Run a wire op's handler on `fields` (raises GolemError); the reply."""
    if op not in OPS:
        raise GolemError(Code.BAD_REQUEST, f"the dashboard does not offer op {op!r}")
    _rid, _op, req = validate_request({**fields, "v": 1, "id": 0, "op": op})

    def no_events(_event: dict[str, Any]) -> None:
        pass

    return await serve_op(daemon, OpContext(daemon), op, req, no_events)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, within http_request_timeout."""
    try:
        async with asyncio.timeout(request.app["http"].request_timeout):
            return await request.json()
    except web.HTTPRequestEntityTooLarge:
        raise GolemError(Code.TOO_LARGE, f"the body is over {request.client_max_size} bytes") from None


async def run_op(request: web.Request) -> web.Response:
    op = request.match_info["op"]
    try:
        try:
            body = await read_json(request)
        except web.HTTPRequestEntityTooLarge:
            raise GolemError(Code.TOO_LARGE, f"the body is over {request.client_max_size} bytes") from None
        except (ValueError, TimeoutError) as exc:
            raise GolemError(Code.BAD_REQUEST, f"the body must be a JSON object: {exc}") from None
        if not isinstance(body, dict):
            raise GolemError(Code.BAD_REQUEST, "the body must be a JSON object")
        reply = await call_op(request.app["http"].daemon, op, body)
    except GolemError as err:
        return error_response(err)
    except Exception as exc:  # our bug: the dashboard must not crash the daemon
        log.exception("dashboard op %s failed", op)
        return error_response(GolemError(Code.INTERNAL, f"internal error: {exc}"))
    return web.json_response({"ok": True, "reply": reply}, dumps=dumps)
