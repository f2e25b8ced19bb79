"""The names and encodings of durable execution: the derived keys and
promise IDs (from golemd.model.effects; docs/semantics.md gives their
format), an effect's result as journaled, what `agent get` shows of a
wait, the invoke request of a call or trigger, and what an observer is
told of an effect."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

# The names live in the model, where the oplog finds them too.
from golemd.model.effects import derived_key as derived_key
from golemd.model.effects import promise_id as promise_id
from golemd.model.tracecontext import callee_traceparent
from golemd.wire.codec import pack

if TYPE_CHECKING:
    from golemd.engine.observer import Observer
    from golemd.model.invocation import Invocation

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


def effect_done(observer: Observer, agent: str, type_name: str, inv: Invocation, seq: int,
                res: bytes, now: float) -> None:
    """Tell the observer that effect `seq` of `inv` has its result `res` journaled."""
    journal = inv.journal
    if journal is None or seq >= len(journal):
        return  # not the journal it was made in: nothing to tell of it
    out = unpack(res)
    err = out.get("error") if isinstance(out, dict) else None
    observer.effect_done(agent, type_name, inv, seq, journal[seq][0], inv.effect_at or now, now,
                         unpack(journal[seq][1]), str(err.get("code")) if isinstance(err, dict) else None)


def invoke_request(target: str, request: dict[str, Any], key: str, mode: str, caller: str,
                   inv: Invocation, seq: int, traced: bool) -> dict[str, Any]:
    """The invoke request of the caller's call or trigger effect `seq`, under
    its derived key; traced (an observer is set), the callee is admitted in
    the caller's trace, under that effect's span (golemd.model.tracecontext)."""
    req = {"agent": target, "method": request.get("method"), "args": request.get("args") or [],
           "idempotency_key": key, "mode": mode}
    if traced:
        req["traceparent"] = callee_traceparent(caller, inv, seq)
    return req
