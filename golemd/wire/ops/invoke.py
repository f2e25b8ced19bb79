"""`invoke`: call a method on an agent.

Request:
    `agent` (str, required): agent ID, `[ENV/]TypeName(arg, ...)`.
    `method` (str, required): a public method of the agent's type.
    `args` (array): positional arguments, any msgpack values; default `[]`.
    `idempotency_key` (str or nil): 1-256 characters (code points, not
        bytes); nil: the daemon makes one (a UUID).
    `mode` (str): `"await"` (default): reply when it finished; `"trigger"`:
        reply when it is durably enqueued.
    `schedule_at` (number or nil): Unix seconds, not before then (within ±1e11).
    `timeout` (number or nil): seconds it may run once started, above 0 and
        at most 1e9; over it the process is killed and it fails `TIMEOUT`;
        nil: the method's own timeout (`types`), if any.
    `stream` (bool): await mode only: the agent's output while it runs, as
        events; ignored with `trigger`.
    `traceparent` (str or nil): a W3C Trace Context traceparent: with traces
        on (otel_endpoint), the invocation's span is a child of that span.
A value out of these ranges is `BAD_REQUEST` (`check` below), before
anything is looked up.

The agent is created on its first invocation. Its queue holds at most
`max_pending` (default 10,000) invocations: one more is `QUEUE_FULL`.

Success: await `{"idempotency_key": K, "result": VALUE}`; trigger
`{"idempotency_key": K, "status": "pending"}`. A key already used on this
agent with the same method and arguments never runs twice: pending or
running, await attaches to it and trigger answers its `status` ("pending"
or "running"); completed, await answers the stored result and trigger
`{"idempotency_key": K, "status": "completed", "result": VALUE}`; failed,
both answer the stored error; canceled, both answer `CANCELED`. With other
method or arguments: `IDEMPOTENCY_CONFLICT`, nothing is enqueued.

Events (await with `stream: true`): `{"type": "queued", "ahead": N}`,
`{"type": "started"}`, `{"type": "output", "stream": "stdout"|"stderr",
"line": TEXT, "ts": UNIX_SECONDS, "idempotency_key": K}`; and for each
durable effect the invocation makes (DESIGN.md §5) as it happens,
`{"type": "effect", "seq": N, "kind": KIND, "detail": TEXT,
"idempotency_key": K}`, then, once its result is journaled,
`{"type": "effect_done", "seq": N, "detail": TEXT, "idempotency_key": K}`;
`{"type": "held", "reason": "interrupted"}` when it waits in the queue of
an interrupted agent (enqueued or attached there, or queued when the agent
was interrupted), until `resume`.

Errors: `INVALID_AGENT_ID`, `UNKNOWN_TYPE`, `UNKNOWN_METHOD`,
`INVALID_ARGUMENTS`, `IDEMPOTENCY_CONFLICT`, `QUEUE_FULL`, `CANCELED`,
`INTERRUPTED`, `INVOCATION_FAILED`, `SNAPSHOT_FAILED`, `AGENT_FAILED`,
`AGENT_DIED`, `TIMEOUT`, `SHUTTING_DOWN`, `STORAGE_FULL`, `TOO_LARGE`.

Daemon half: none here. golemd.server.connection hands the validated
request to `Supervisor.submit`, which answers through a callback from inside
the commit that makes it durable: no task per invocation (see there why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, NIL, Call

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from types import EllipsisType

    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, EventCallback, Fields

MAX_IDEMPOTENCY_KEY = 256
MAX_TIMEOUT = 1e9  # seconds (31 years): beyond it a number is a mistake, and the store's integers end
MAX_TIMESTAMP = 1e11  # seconds since the epoch (the year 5138)
MODES = ("await", "trigger")

_NUM = (int, float)

FIELDS: Fields = {
    "agent": ((str,), True),
    "method": ((str,), True),
    "args": ((list,), False),
    "idempotency_key": ((str, NIL), False),
    "mode": ((str,), False),
    "schedule_at": ((*_NUM, NIL), False),
    "timeout": ((*_NUM, NIL), False),
    "stream": ((bool,), False),
    "traceparent": ((str, NIL), False),
}
MUTATING = True


def check(msg: dict[str, Any]) -> str | None:
    if msg.get("mode") is not None and msg["mode"] not in MODES:
        return "field 'mode' must be \"await\" or \"trigger\""
    key = msg.get("idempotency_key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        return f"an idempotency key must have 1 to {MAX_IDEMPOTENCY_KEY} characters"
    t = msg.get("timeout")
    if t is not None and not 0 < t <= MAX_TIMEOUT:
        return f"field 'timeout' must be a positive number of seconds, at most {MAX_TIMEOUT:g}"
    s = msg.get("schedule_at")
    if s is not None and not -MAX_TIMESTAMP < s < MAX_TIMESTAMP:
        return "field 'schedule_at' must be a Unix time in seconds"
    tp = msg.get("traceparent")
    if tp is not None:
        # Imported here: golemctl loads this module for every invoke, and the
        # trace context's hashing (hashlib) would cost each command milliseconds.
        from golemd.model.tracecontext import parse_traceparent

        if parse_traceparent(tp) is None:
            return "field 'traceparent' must be a W3C traceparent (00-TRACE_ID-SPAN_ID-FLAGS, lowercase hex)"
    return None


# --- client half -----------------------------------------------------------------


def client(self: Caller, agent: str | AgentId, method: str, args: Sequence[Any] = (),
           idempotency_key: str | None = None, mode: str = "await",
           schedule_at: float | datetime | None = None, timeout: float | None = None,
           stream: bool = False, on_event: EventCallback | None = None,
           reply_timeout: float | None | EllipsisType = ..., traceparent: str | None = None) -> Any:
    """Invoke a method. Returns {"idempotency_key", "result"} (await) or
    {"idempotency_key", "status", ...} (trigger). `timeout` bounds the
    invocation's run time in golemd, not the wait for it; with stream=True
    the agent's output arrives in on_event as {"type": "output", ...};
    `traceparent` (W3C) makes the invocation's span a child of the caller's."""
    return self.call(Call("invoke", {
        "agent": str(agent), "method": method, "args": list(args),
        "idempotency_key": idempotency_key, "mode": mode,
        "schedule_at": unix_seconds(schedule_at), "timeout": timeout,
        "stream": True if stream else None, "traceparent": traceparent,
    }, None, MAP), on_event, reply_timeout)


def no_reply_deadline(fields: dict[str, Any]) -> bool:
    """An awaited invocation may queue behind others for hours."""
    return bool(fields.get("mode", "await") != "trigger")


def unix_seconds(when: float | datetime | None) -> float | None:
    if when is None or isinstance(when, (int, float)):
        return when
    if when.tzinfo is None:
        raise ValueError("schedule_at needs a time zone (a naive datetime is ambiguous)")
    return when.timestamp()


handle = None  # see the docstring: the connection answers invoke itself
