"""golemctl's output: JSON documents for programs, tables and "key: value"
lines for people. Pure functions from reply data to text; cli.py prints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from golemd.model.agent_id import format_literal
from golemd.model.errors import GolemError

# --- JSON ------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """msgpack values as JSON values. JSON has no bytes: they become base64
    strings (standard alphabet, padded). Map keys that are not strings
    become their JSON text (1 -> "1", None -> "null"), bytes keys base64."""
    if isinstance(value, dict):
        return {_json_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        import base64  # only JSON output with bytes in it needs it

        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        import base64

        return base64.b64encode(key).decode("ascii")
    import json  # here, not at the top: text output, the default, never needs it

    return json.dumps(jsonable(key))


def to_json(value: Any) -> str:
    import json

    return json.dumps(jsonable(value))


def error_json(err: GolemError) -> dict[str, Any]:
    return {"error": err.to_wire()}


def error_text(err: GolemError) -> str:
    """`error: CODE: message`, after the agent's traceback when there is one."""
    tb = (err.details or {}).get("traceback") if isinstance(err.details, dict) else None
    line = f"error: {err}"
    if isinstance(tb, str) and tb.strip():
        return tb.rstrip("\n") + "\n" + line
    return line


# --- values ----------------------------------------------------------------


def local_time(ts: Any, ms: bool = False) -> str:
    """Unix seconds as local ISO 8601 with the UTC offset; '-' when absent."""
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return "-"
    try:
        dt = datetime.fromtimestamp(ts).astimezone()
    except (OverflowError, OSError, ValueError):
        return str(ts)
    return dt.isoformat(timespec="milliseconds" if ms else "seconds")


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h {m}m"
    if h:
        return f"{h}h {m}m {s}s"
    if m:
        return f"{m}m {s}s"
    return f"{seconds:.1f}s"


def size(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _opt(value: Any) -> str:
    return "-" if value is None else str(value)


def args_text(args: Any) -> str:
    """Arguments as they are written in a call: `"c1", 5`."""
    if not isinstance(args, (list, tuple)):
        return _opt(args)
    return ", ".join(format_literal(a) for a in args)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- layouts ----------------------------------------------------------------


def key_values(rows: Sequence[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    body = [list(r) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header)] + [line(r) for r in body])


# --- one function per kind of reply --------------------------------------------

_META_LABELS = {
    "agent_id": "Agent ID", "type": "Type", "env": "Environment", "args": "Arguments",
    "status": "Status", "pending_invocation_count": "Pending invocations",
    "env_vars": "Env variables",
    "current_invocation": "Current invocation", "waiting_for": "Waiting for", "pid": "PID",
    "created_at": "Created at",
    "last_active_at": "Last active at", "completed_count": "Completed",
    "failed_count": "Failed", "retry_count": "Retries", "last_error": "Last error",
    "memory_rss_bytes": "Memory (RSS)", "cpu_seconds": "CPU time",
    "output_cut_lines": "Output lines cut", "output_dropped_bytes": "Output dropped",
}


def current_invocation(cur: Any) -> str:
    if not isinstance(cur, dict):
        return "-"
    return f"{cur.get('method', '?')} (key {cur.get('idempotency_key', '?')})"


def waiting_for(wait: Any) -> str:
    """What an invocation waits on, as golemctl's user would write it."""
    if not isinstance(wait, dict):
        return "-"
    if "agent" in wait:
        return f"a call to {wait['agent']} (key {wait.get('idempotency_key', '?')})"
    if "promise" in wait:
        return f"promise {wait['promise']}"
    if isinstance(wait.get("until"), (int, float)):
        return f"a sleep until {local_time(wait['until'])}"
    return str(wait)


def metadata(meta: dict[str, Any]) -> str:
    """`agent get`: one "Label: value" line per field, in protocol order."""
    shown = {
        "args": args_text(meta.get("args")),
        "current_invocation": current_invocation(meta.get("current_invocation")),
        "waiting_for": waiting_for(meta.get("waiting_for")),
        "env_vars": (", ".join(f"{k}={v}" for k, v in sorted(meta["env_vars"].items())) or "-")
        if isinstance(meta.get("env_vars"), dict) else "-",
        "created_at": local_time(meta.get("created_at")),
        "last_active_at": local_time(meta.get("last_active_at")),
        "memory_rss_bytes": size(meta.get("memory_rss_bytes")),
        "cpu_seconds": (f"{meta['cpu_seconds']:.2f} s"
                        if isinstance(meta.get("cpu_seconds"), (int, float)) else "-"),
        "output_dropped_bytes": size(meta.get("output_dropped_bytes")),
    }
    rows = [(label, shown.get(k, _opt(meta.get(k)))) for k, label in _META_LABELS.items()]
    rows += [(k, _opt(v)) for k, v in meta.items() if k not in _META_LABELS]
    return key_values(rows)


def agents(items: Sequence[dict[str, Any]]) -> str:
    """`agent list`: one row per agent."""
    if not items:
        return "no agents"
    rows = ([m.get("agent_id", "?"), _opt(m.get("status")),
             _opt(m.get("pending_invocation_count")), current_invocation(m.get("current_invocation")),
             _opt(m.get("pid")), local_time(m.get("last_active_at"))] for m in items)
    return table(["AGENT ID", "STATUS", "PENDING", "CURRENT", "PID", "LAST ACTIVE"], rows)


def invocations(items: Sequence[dict[str, Any]]) -> str:
    """`agent invocations`: running first, then the queue, then scheduled."""
    if not items:
        return "no pending invocations"
    rows = ([_opt(i.get("status")), _opt(i.get("idempotency_key")),
             f"{i.get('method', '?')}({args_text(i.get('args', []))})",
             local_time(i.get("created_at")), local_time(i.get("schedule_at"))] for i in items)
    return table(["STATUS", "IDEMPOTENCY KEY", "CALL", "CREATED AT", "SCHEDULED AT"], rows)


def oplog(entries: Sequence[dict[str, Any]]) -> str:
    """`agent oplog`: INDEX  TIME  KIND  METHOD  KEY  DETAIL, oldest first;
    DETAIL is the entry's content (oplog_content)."""
    if not entries:
        return "no oplog entries"
    rows = ([_opt(e.get("index")), local_time(e.get("ts"), ms=True), _opt(e.get("kind")),
             e.get("method") or "", e.get("idempotency_key") or "", oplog_content(e)]
            for e in entries)
    return table(["#", "TIME", "KIND", "METHOD", "IDEMPOTENCY KEY", "DETAIL"], rows)


VALUE_CHARS = 200
"""A value longer than this, as text, is cut in the text view (--format json shows it whole)."""


def oplog_content(e: dict[str, Any]) -> str:
    """An oplog entry's content on one line: a call's arguments `(5, "x")`, a
    result `-> 6`, an error `CODE: message`, an effect `#1 call
    A("x").m(1) -> 2`, else its detail. From the structured fields; the
    detail alone from a daemon that sends no others."""
    parts = []
    if "args" in e:
        parts.append(f"({_cut(args_text(e['args']))})")
    if e.get("schedule_at") is not None:
        parts.append(f"scheduled at {local_time(e['schedule_at'])}")
    if isinstance(e.get("timeout"), (int, float)):
        parts.append(f"timeout {e['timeout']:g}s")
    if "result" in e:
        parts.append(f"-> {_cut(format_literal(e['result']))}")
    if "error" in e:
        parts.append(_error(e["error"]))
    effect = e.get("effect")
    if isinstance(effect, dict):
        parts.append(_effect(effect))
    elif e.get("detail") is not None:
        parts.append(_detail(e["detail"]))
    parts += _omitted(e.get("omitted"))
    return " ".join(parts).replace("\n", " ")


def _cut(text: str) -> str:
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 3] + "..."


def _error(err: Any) -> str:
    if not isinstance(err, dict):
        return _opt(err)
    return f"{err.get('code') or err.get('type') or '?'}: {_cut(str(err.get('message', '')))}"


def _omitted(omitted: Any) -> list[str]:
    if not isinstance(omitted, dict):
        return []
    return [f"({name} not shown: {size(n)})" for name, n in omitted.items()]


def _effect(eff: dict[str, Any]) -> str:
    """`#N WHAT` and, where this entry has it, `-> RESULT`, `-> error CODE: message` or `(waiting)`."""
    kind, req = eff.get("kind", "?"), eff.get("request")
    req = req if isinstance(req, dict) else {}
    if kind in ("call", "trigger"):
        what = f"{kind} {eff.get('target', '?')}.{req.get('method', '?')}({_cut(args_text(req.get('args', [])))})"
    elif kind == "step":
        what = f"step {eff.get('target', '?')}({_cut(args_text(req.get('args', [])))})"
    elif kind == "sleep":
        what = f"sleep {req.get('seconds', '?')}s"
    elif kind == "complete":
        what = f"complete promise {eff.get('target', '?')} with {_cut(format_literal(req.get('value')))}"
    elif kind == "wait":
        what = f"wait promise {eff.get('target', '?')}"
    elif eff.get("target") is not None:
        what = f"{kind} {eff['target']}"
    else:
        what = str(kind)
    if isinstance(eff.get("until"), (int, float)):
        what += f" until {local_time(eff['until'])}"
    text = f"#{eff.get('seq', '?')} {what}"
    if "result" in eff:
        text += f" -> {_cut(format_literal(eff['result']))}"
    elif "error" in eff:
        text += f" -> error {_error(eff['error'])}"
    elif eff.get("waiting"):
        text += " (waiting)"
    return " ".join([text, *_omitted(eff.get("omitted"))])


def _detail(d: Any) -> str:
    if d is None:
        return ""
    text = d if isinstance(d, str) else format_literal(d)
    return text.replace("\n", " ")


def promise_state(p: dict[str, Any]) -> str:
    return "completed" if p.get("completed") else "pending"


def promise(p: dict[str, Any]) -> str:
    """`promise get`: "Label: value" lines; the value as a Python literal."""
    rows = [("Promise ID", _opt(p.get("promise_id"))), ("Agent ID", _opt(p.get("agent_id"))),
            ("Idempotency key", _opt(p.get("idempotency_key"))), ("State", promise_state(p)),
            ("Created at", local_time(p.get("created_at"))), ("Age", duration(p.get("age_seconds"))),
            ("Completed at", local_time(p.get("completed_at"))),
            ("Value", format_literal(p["value"]) if "value" in p else "-")]
    shown = {"promise_id", "agent_id", "idempotency_key", "completed", "created_at", "age_seconds",
             "completed_at", "value"}
    rows += [(k, _opt(v)) for k, v in p.items() if k not in shown]
    return key_values(rows)


def promises(items: Sequence[dict[str, Any]]) -> str:
    """`promise list`: one row per promise, oldest first."""
    if not items:
        return "no promises"
    rows = ([_opt(p.get("promise_id")), _opt(p.get("agent_id")), duration(p.get("age_seconds")),
             promise_state(p)] for p in items)
    return table(["PROMISE ID", "AGENT ID", "AGE", "STATE"], rows)


def types(items: Sequence[dict[str, Any]]) -> str:
    """`types`: each type with its constructor and methods, as signatures."""
    if not items:
        return "no agent types loaded"
    blocks = []
    for t in items:
        name = t.get("name", "?")
        flags = "durable" if t.get("durable", True) else "ephemeral"
        lines = [f"{name}  ({t.get('module', '?')}, {flags})"]
        if t.get("doc"):
            lines.append(f"    {_first_line(t['doc'])}")
        ctor = t.get("constructor") or {}
        lines.append(f"    {name}{ctor.get('signature', '(...)')}")
        for m in t.get("methods") or []:
            sig = f"    .{m.get('name', '?')}{m.get('signature', '(...)')}"
            lines.append(f"{sig}  # {_first_line(m['doc'])}" if m.get("doc") else sig)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _first_line(doc: str) -> str:
    return doc.strip().splitlines()[0] if doc.strip() else ""


def status(st: dict[str, Any]) -> str:
    """`daemon status`: "key: value" lines."""
    by_status = st.get("agents_by_status")
    agents_line = _opt(st.get("agents"))
    if isinstance(by_status, dict) and by_status:
        agents_line += " (" + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())) + ")"
    rows = [("version", _opt(st.get("version"))), ("pid", _opt(st.get("pid"))),
            ("uptime", duration(st.get("uptime"))), ("socket", _opt(st.get("socket"))),
            ("state dir", _opt(st.get("state_dir"))), ("agents", agents_line),
            ("live workers", _opt(st.get("live_workers"))),
            ("calls in flight", _opt(st.get("calls_in_flight")))]
    known = {"version", "pid", "uptime", "socket", "state_dir", "agents", "agents_by_status",
             "live_workers", "calls_in_flight", "cluster"}
    rows += [(k, _opt(v)) for k, v in st.items() if k not in known]
    text = key_values(rows)
    cluster = st.get("cluster")
    if isinstance(cluster, dict):
        text += "\n" + cluster_status(cluster)
    return text


def cluster_status(cl: dict[str, Any]) -> str:
    """`daemon status` of a cluster node: this node, then every node's health."""
    head = key_values([("node", f"{cl.get('node')} (epoch {cl.get('epoch')}), owns {cl.get('owned')} agents, "
                                f"lease renewed {duration(cl.get('since_renewal'))} ago, "
                                f"lease_timeout {duration(cl.get('lease_timeout'))}")])
    rows = ([n.get("node", "?"), _opt(n.get("address")), "alive" if n.get("alive") else "DEAD",
             f"{n['lease_left']:.1f} s" if isinstance(n.get("lease_left"), (int, float)) else "-",
             _opt(n.get("agents")), _opt(n.get("epoch"))] for n in cl.get("nodes") or [])
    return head + "\n" + table(["NODE", "ADDRESS", "HEALTH", "LEASE LEFT", "AGENTS", "EPOCH"], rows)


def output_line(event: dict[str, Any]) -> str:
    """`agent stream`: TIME STREAM [KEY] LINE."""
    key = event.get("idempotency_key")
    tag = f" [{key}]" if key else ""
    return f"{local_time(event.get('ts'), ms=True)} {event.get('stream', '?')}{tag} {strip_eol(event.get('line', ''))}"


def strip_eol(line: Any) -> str:
    text = line if isinstance(line, str) else str(line)
    return text[:-1] if text.endswith("\n") else text
