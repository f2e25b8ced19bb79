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
from golemd.model.oplog_query import newest_from
from golemd.storage.base import OplogEffect, OplogEntry, OplogError

VALUE_MAX_BYTES = 64 * 1024
"""A value (arguments, a result, an effect's request or result) larger than
this, packed, is left out of its entry and its size given under `omitted`:
one oplog reply must stay well under the protocol's 64 MiB."""

INVOCATION_COLS = ("key", "method", "args", "status", "created_at", "started_at", "finished_at", "outcome",
                   "schedule_at", "timeout")
"""The invocation columns invocation_entries() reads."""

EVENT_COLS = "ts, kind, key, method, detail"
"""The event columns event_entries() reads."""

_UNREADABLE = object()
_RAW = "_raw"  # an invocation entry's packed content until merge() unpacks it
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


def event_entries(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Events (ts, kind, key, method, detail) as entries, before indexing."""
    out: list[dict[str, Any]] = []
    for row in rows:
        entry = {"ts": row["ts"], "kind": row["kind"]}
        for col, name in (("key", "idempotency_key"), ("method", "method"), ("detail", "detail")):
            if row[col] is not None:
                entry[name] = row[col]
        out.append(entry)
    return out


def invocation_entries(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each invocation (INVOCATION_COLS) as its entries, before indexing:
    enqueued (with its arguments), started, and its final status (with its
    result or error)."""
    out: list[dict[str, Any]] = []
    append = out.append
    for inv in rows:
        key, method = inv["key"], inv["method"]
        # The packed content goes along as it is (_RAW) and is unpacked by
        # merge() for the entries it keeps only: `oplog --last 10` of a long
        # history decodes ten entries, not all of them.
        enqueued: dict[str, Any] = {"ts": inv["created_at"], "kind": "enqueued", "idempotency_key": key,
                                    "method": method, _RAW: inv["args"]}
        if inv["schedule_at"] is not None:
            enqueued["schedule_at"] = inv["schedule_at"]
        if inv["timeout"] is not None:
            enqueued["timeout"] = inv["timeout"]
        append(enqueued)
        if inv["started_at"] is not None:
            append({"ts": inv["started_at"], "kind": "started", "idempotency_key": key, "method": method})
        if inv["finished_at"] is not None:
            append({"ts": inv["finished_at"], "kind": inv["status"], "idempotency_key": key,
                    "method": method, _RAW: inv["outcome"]})
    return out


def _unpack_content(entry: dict[str, Any]) -> None:
    """Put an invocation entry's content (its _RAW bytes) in its fields."""
    data = entry.pop(_RAW)
    omitted: dict[str, int] = {}
    if entry["kind"] == "enqueued":
        call = _sized(data, "args", omitted)
        if isinstance(call, (list, tuple)) and len(call) == 2 and isinstance(call[1], (list, tuple)):
            entry["args"] = list(call[1])
    else:
        outcome = _sized(data, "error" if entry["kind"] == "failed" else "result", omitted)
        if isinstance(outcome, dict):
            if "error" in outcome:
                entry["error"] = _error(outcome["error"])
            elif "result" in outcome:
                entry["result"] = outcome["result"]
    if omitted:
        entry["omitted"] = omitted


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
        base = {"idempotency_key": row["key"]}
        tag = f"#{row['seq']} {what}"
        if row["result"] is None:
            eff = _effect(row, request, None, omitted)
            eff["waiting"] = True
            out.append({"ts": row["started_at"], "kind": "effect", **base, "detail": tag + " (waiting)",
                        "effect": eff})
            continue
        request_omitted = dict(omitted)
        result = _sized(row["result"], "result", omitted)
        done = f"{tag} -> " + ("<not shown>" if "result" in omitted else describe_result(
            "<unreadable>" if result is _UNREADABLE else result))
        if row["finished_at"] is not None and row["finished_at"] != row["started_at"]:
            out.append({"ts": row["started_at"], "kind": "effect", **base, "detail": tag,
                        "effect": _effect(row, request, None, request_omitted)})
            out.append({"ts": row["finished_at"], "kind": "effect_done", **base, "detail": done,
                        "effect": _effect(row, request, result, omitted)})
        else:
            out.append({"ts": row["started_at"], "kind": "effect", **base, "detail": done,
                        "effect": _effect(row, request, result, omitted)})
    return out


def merge(entries: list[dict[str, Any]], last: int | None) -> list[OplogEntry]:
    """The entries above, in time order (at one instant: created, then
    enqueued, then started, then the rest), indexed 1.. over the whole log;
    `last` as Store.oplog says."""
    entries.sort(key=lambda e: (e["ts"], _ORDER.get(e["kind"], 3)))
    first = newest_from(len(entries), last)
    kept = entries[first:]
    for e in kept:
        if _RAW in e:
            _unpack_content(e)
    return [{"index": i, **e} for i, e in enumerate(kept, first + 1)]  # type: ignore[misc]


def build(events: Iterable[Mapping[str, Any]], invocations: Iterable[Mapping[str, Any]],
          effects: Iterable[Mapping[str, Any]], last: int | None) -> list[OplogEntry]:
    """Store.oplog from an agent's rows: its events (EVENT_COLS, in the order
    they were written), its invocations (INVOCATION_COLS) and its effects
    (EffectRow, oldest first)."""
    entries = event_entries(events) + invocation_entries(invocations) + effect_entries(effects)
    return merge(entries, last)
