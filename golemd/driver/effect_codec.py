"""The names and encodings of durable execution: the derived keys and
promise IDs (docs/semantics.md gives their format), an effect's result as
journaled, and what `agent get` shows of a wait."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from golemd.wire.codec import pack

WAITS = ("call", "sleep", "wait")


def _digest(agent: str, key: str) -> str:
    return hashlib.sha256(f"{agent}\0{key}".encode()).hexdigest()[:24]


def derived_key(caller: str, key: str, seq: int) -> str:
    """The idempotency key of the call effect `seq` of the caller's invocation
    `key` (docs/semantics.md): the same on every re-run, unique per caller."""
    return f"call-{_digest(caller, key)}-{seq}"


def promise_id(agent: str, key: str, seq: int) -> str:
    return f"p-{_digest(agent, key)}-{seq}"


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
