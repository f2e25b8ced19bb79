"""An agent's oplog, merged at read time from the rows a store keeps (Store.oplog):
its events, its invocations' lifecycles with their content (arguments, result
or error) and its durable effects. Pure: a store reads the rows, this module
makes the entries, so every store shows the same log. Nothing here is on the
write path: the content is what the invocation and effect rows hold already.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgpack

from golemd.model.effects import derived_key, describe_request, describe_result
from golemd.storage.base import OplogEffect, OplogEntry, OplogError

VALUE_MAX_BYTES = 64 * 1024
"""A value (arguments, a result, an effect's request or result) larger than
this, packed, is left out of its entry and its size given under `omitted`:
one oplog reply must stay well under the protocol's 64 MiB."""

INVOCATION_COLS = ("key", "method", "args", "status", "created_at", "started_at", "finished_at", "outcome",
                   "schedule_at", "timeout")
"""The invocation columns invocation_entries() reads."""

_UNREADABLE = object()
_ORDER = {"created": 0, "enqueued": 1, "started": 2}


def _unpack(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        return _UNREADABLE


def _sized(data: bytes | None, name: str, omitted: dict[str, int]) -> Any:
    """The unpacked value, or _UNREADABLE with its size noted when it is too big."""
    if data is not None and len(data) > VALUE_MAX_BYTES:
        omitted[name] = len(data)
        return _UNREADABLE
    return _unpack(data)


def _error(err: Any) -> OplogError:
    """An error as the oplog shows it: its code (a step's exception: its type) and message."""
    if not isinstance(err, dict):
        return {"code": "INTERNAL", "message": repr(err)}
    out: OplogError = {"message": str(err.get("message", ""))}
    if err.get("code") is not None:
        out["code"] = str(err["code"])
    if err.get("type") is not None:
        out["type"] = str(err["type"])
    return out


def invocation_entries(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each invocation (INVOCATION_COLS) as its entries, before indexing:
    enqueued (with its arguments), started, and its final status (with its
    result or error)."""
    out: list[dict[str, Any]] = []
    for inv in rows:
        base = {"key": inv["key"], "method": inv["method"]}
        enqueued: dict[str, Any] = {**base, "ts": inv["created_at"], "kind": "enqueued"}
        omitted: dict[str, int] = {}
        call = _sized(inv["args"], "args", omitted)
        if isinstance(call, (list, tuple)) and len(call) == 2 and isinstance(call[1], (list, tuple)):
            enqueued["args"] = list(call[1])
        for col in ("schedule_at", "timeout"):
            if inv[col] is not None:
                enqueued[col] = inv[col]
        if omitted:
            enqueued["omitted"] = omitted
        out.append(enqueued)
        if inv["started_at"] is not None:
            out.append({**base, "ts": inv["started_at"], "kind": "started"})
        if inv["finished_at"] is not None:
            final: dict[str, Any] = {**base, "ts": inv["finished_at"], "kind": inv["status"]}
            omitted = {}
            outcome = _sized(inv["outcome"], "error" if inv["status"] == "failed" else "result", omitted)
            if isinstance(outcome, dict) and "error" in outcome:
                final["error"] = _error(outcome["error"])
            elif isinstance(outcome, dict) and "result" in outcome:
                final["result"] = outcome["result"]
            if omitted:
                final["omitted"] = omitted
            out.append(final)
    return out


def _effect(row: Mapping[str, Any], request: Any, result: Any, omitted: dict[str, int]) -> OplogEffect:
    eff: OplogEffect = {"seq": row["seq"], "kind": row["kind"]}
    target = _target(row["kind"], request)
    if target is not None:
        eff["target"] = target
    if row["kind"] in ("call", "trigger"):
        eff["callee_key"] = derived_key(row["agent_id"], row["key"], row["seq"])
    if request is not _UNREADABLE:
        eff["request"] = request
    if row["until"] is not None:
        eff["until"] = row["until"]
    if isinstance(result, dict) and "error" in result:
        eff["error"] = _error(result["error"])
    elif isinstance(result, dict) and "value" in result:
        eff["result"] = result["value"]
    if omitted:
        eff["omitted"] = dict(omitted)
    return eff


def _target(kind: str, request: Any) -> str | None:
    """Whom an effect acts on: the agent called, the step's function, the promise."""
    if not isinstance(request, dict):
        return None
    name = {"call": "agent", "trigger": "agent", "step": "fn", "wait": "promise", "complete": "promise"}.get(kind)
    value = request.get(name) if name else None
    return None if value is None else str(value)


def effect_entries(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """An agent's effects (EffectRow) as oplog entries, before indexing: one
    when each was asked for (with its result when it came at once), and one
    when a result that came later was journaled."""
    out: list[dict[str, Any]] = []
    for row in rows:
        omitted: dict[str, int] = {}
        request = _sized(row["request"], "request", omitted)
        what = describe_request(row["kind"], None if request is _UNREADABLE else request)
        base = {"key": row["key"], "method": None}
        tag = f"#{row['seq']} {what}"
        if row["result"] is None:
            eff = _effect(row, request, None, omitted)
            eff["waiting"] = True
            out.append({**base, "ts": row["started_at"], "kind": "effect", "detail": tag + " (waiting)",
                        "effect": eff})
            continue
        request_omitted = dict(omitted)
        result = _sized(row["result"], "result", omitted)
        done = f"{tag} -> " + ("<not shown>" if "result" in omitted else describe_result(
            "<unreadable>" if result is _UNREADABLE else result))
        if row["finished_at"] is not None and row["finished_at"] != row["started_at"]:
            out.append({**base, "ts": row["started_at"], "kind": "effect", "detail": tag,
                        "effect": _effect(row, request, None, request_omitted)})
            out.append({**base, "ts": row["finished_at"], "kind": "effect_done", "detail": done,
                        "effect": _effect(row, request, result, omitted)})
        else:
            out.append({**base, "ts": row["started_at"], "kind": "effect", "detail": done,
                        "effect": _effect(row, request, result, omitted)})
    return out


_FIELDS = ("idempotency_key", "method", "detail", "args", "schedule_at", "timeout", "result", "error",
           "effect", "omitted")


def merge(entries: list[dict[str, Any]], last: int | None) -> list[OplogEntry]:
    """Events (dicts of ts, kind, key, method, detail) and the entries above,
    in time order (at one instant: created, then enqueued, then started, then
    the rest), indexed 1.. over the whole log; `last` as Store.oplog says."""
    entries.sort(key=lambda e: (e["ts"], _ORDER.get(e["kind"], 3)))
    out: list[OplogEntry] = []
    for i, e in enumerate(entries, 1):
        entry: OplogEntry = {"index": i, "ts": e["ts"], "kind": e["kind"]}
        if e.get("key") is not None:
            e["idempotency_key"] = e["key"]
        for name in _FIELDS:
            if name in e and (e[name] is not None or name == "result"):
                entry[name] = e[name]  # type: ignore[literal-required]
        out.append(entry)
    if last is None:
        return out
    return out[len(out) - last:] if last else []
