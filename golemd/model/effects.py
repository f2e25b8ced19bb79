"""The names durable execution gives (the idempotency key of an agent's call
to another, a promise's ID: docs/semantics.md gives their format), and how
an effect reads in the oplog and in a streaming caller's events: one line
for what was asked, one for its result."""

from __future__ import annotations

import hashlib
from typing import Any


def _digest(agent: str, key: str) -> str:
    return hashlib.sha256(f"{agent}\0{key}".encode()).hexdigest()[:24]


def derived_key(caller: str, key: str, seq: int) -> str:
    """The idempotency key of the call effect `seq` of the caller's invocation
    `key` (docs/semantics.md): the same on every re-run, unique per caller."""
    return f"call-{_digest(caller, key)}-{seq}"


def promise_id(agent: str, key: str, seq: int) -> str:
    """The ID of the promise effect `seq` of the agent's invocation `key` makes."""
    return f"p-{_digest(agent, key)}-{seq}"


def describe_request(kind: str, req: Any) -> str:
    """One line for an effect's request (golemd.host.effects makes them)."""
    if not isinstance(req, dict):
        return kind
    if kind in ("call", "trigger"):
        args = ", ".join(_short(a) for a in req.get("args") or [])
        return f"{kind} {req.get('agent')}.{req.get('method')}({args})"
    if kind == "step":
        return f"step {req.get('fn')}"
    if kind == "sleep":
        return f"sleep {req.get('seconds')}s"
    if kind in ("wait", "complete"):
        return f"{kind} promise {req.get('promise')}"
    return kind


def describe_result(res: Any) -> str:
    if isinstance(res, dict) and "error" in res:
        err = res["error"] or {}
        return f"error {err.get('code', '')}: {err.get('message', '')}"[:300]
    if isinstance(res, dict) and "value" in res:
        return _short(res["value"])
    return _short(res)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
