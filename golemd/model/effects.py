"""How an effect of durable execution reads in the oplog and in a streaming
caller's events: one line for what was asked, one for its result."""

from __future__ import annotations

from typing import Any


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
