"""The names and encodings of durable execution: the derived keys and
promise IDs (from golemd.model.effects; docs/semantics.md gives their
format), an effect's result as journaled, and what `agent get` shows of a
wait."""

from __future__ import annotations

from typing import Any

import msgpack

# The names live in the model, where the oplog finds them too.
from golemd.model.effects import derived_key as derived_key
from golemd.model.effects import promise_id as promise_id
from golemd.wire.codec import pack

WAITS = ("call", "sleep", "wait")


def value_res(value: Any) -> bytes:
    return pack({"value": value})


def error_res(code: str, message: str, details: Any = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err["details"] = details
    return pack({"error": err})


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def waiting_for(kind: str, request: dict[str, Any], until: float | None, target: str | None = None,
                key: str | None = None) -> dict[str, Any]:
    """What `agent get` shows of a wait."""
    if kind == "call":
        return {"agent": target or request.get("agent"), "idempotency_key": key}
    if kind == "wait":
        return {"promise": request.get("promise")}  # its deadline, if any, is the journal's
    return {"until": until}
