"""The worker/template protocol: the control messages between the daemon and
its template process (the fork server, golemd.host.zygote), between the
template and a spare it forked ahead of need, and between the daemon and
each worker (golemd.host.runtime). Private to one golemd installation (both
ends run the same code), unlike the client protocol, but a worker runs agent
code that can write anything on its control fd: what arrives is checked.

Channels and their framing:

- template channel: a SOCK_SEQPACKET socketpair, daemon <-> template; one
  msgpack map per packet. A `spawn` carries SPAWN_FDS file descriptors
  (SCM_RIGHTS): the new worker's control socket, stdout and stderr. A packet
  longer than the reader's buffer is cut without notice, so readers take up
  to TEMPLATE_PACKET bytes, READY_PACKET for `ready` (it holds the catalog).
- spare channel: a SOCK_SEQPACKET socketpair, template -> one spare; a
  single `assign` with the same SPAWN_FDS descriptors.
- control channel: a SOCK_STREAM socketpair, daemon <-> worker; msgpack maps
  back to back, at most MAX_WORKER_MESSAGE bytes each. The worker's stdout
  and stderr are separate pipes (its log) and never carry control messages.

Messages, by sender ("op": fields; * optional):

    daemon   -> template  spawn         req, type, memory_limit (bytes, 0: none)
    template -> daemon    ready         types (the catalog: type name -> description)
                          load_failed   error (a traceback)
                          spawned       req, pid
                          spawn_failed  req, error
                          exited        pid, code (as os.waitstatus_to_exitcode)
    template -> spare     assign        type, memory_limit
    daemon   -> worker    init          args, snapshot*, spin_us*, env*, oom*, title*
                          call          id, method, args, journal*
                          drop          id
                          effect_result id, seq, res
    worker   -> daemon    init          ok, error (when not ok)
                          result        id, ok, then snapshot*, result (ok)
                                        or code, error (not ok)
                          dropped       id
                          effect        id, seq, kind, req, res*

`error` in a worker's reply is an ErrorInfo (type, message, traceback). A
worker answers `init` once, then each `call` with the `result` of the same
`id`, in order. The daemon may send several calls before the first is
answered (batch_calls): the worker runs them in order, and after each
`result` reads what came meanwhile before it starts the next. A `drop` of a
call it has not started takes that call and every later one out: each is
answered `dropped` instead of `result`; a drop of one started or answered
already is ignored. The `result` of a successful call is spliced into an
already packed map by golemd.host.runtime: keep that map under 16 fields.

Durable execution (golemd.host.effects, golemd.driver.durable): while it
runs call `id`, the worker sends an `effect` for each durable effect the
agent makes, numbered `seq` from 0 within the call: `kind` (call, trigger,
step, sleep, promise, wait, complete), `req` (msgpack bytes of what is
asked, compared byte for byte on a re-run) and, for a step, `res` (its
result, msgpack bytes of {"value": V} or {"error": {...}}). It then reads
until the `effect_result` of that id and seq, whose `res` is the journaled
result, in the same encoding. A `call` sent again after a crash carries
`journal`: the effects journaled so far, [kind, req, res or nil] each by
seq; those with a result are replayed in the worker without a message.
"""

# No `from __future__ import annotations`: TypedDict must see NotRequired
# itself (in strings it cannot, and every key would count as required).
from collections.abc import Callable
from typing import Any, Literal, NotRequired, TypedDict

# Senders.
DAEMON = "daemon"
TEMPLATE = "template"
WORKER = "worker"

# Ops.
SPAWN = "spawn"
READY = "ready"
LOAD_FAILED = "load_failed"
SPAWNED = "spawned"
SPAWN_FAILED = "spawn_failed"
EXITED = "exited"
ASSIGN = "assign"
INIT = "init"
CALL = "call"
RESULT = "result"
DROP = "drop"
DROPPED = "dropped"
EFFECT = "effect"
EFFECT_RESULT = "effect_result"

SPAWN_FDS = 3  # control socket, stdout, stderr: in this order
TEMPLATE_PACKET = 1 << 16
READY_PACKET = 1 << 24
MAX_WORKER_MESSAGE = 256 * 1024 * 1024


class ErrorInfo(TypedDict):
    type: str  # the exception's type, module-qualified unless a builtin
    message: str
    traceback: str


class Spawn(TypedDict):
    op: Literal["spawn"]
    req: int  # echoed by spawned / spawn_failed
    type: str
    memory_limit: int


class Ready(TypedDict):
    op: Literal["ready"]
    types: dict[str, dict[str, Any]]  # golemd.host.apps.describe_type of each


class LoadFailed(TypedDict):
    op: Literal["load_failed"]
    error: str


class Spawned(TypedDict):
    op: Literal["spawned"]
    req: int
    pid: int


class SpawnFailed(TypedDict):
    op: Literal["spawn_failed"]
    req: int
    error: str


class Exited(TypedDict):
    op: Literal["exited"]
    pid: int
    code: int


class Assign(TypedDict):
    op: Literal["assign"]
    type: str
    memory_limit: int


class InitRequest(TypedDict):
    op: Literal["init"]
    args: list[Any]  # the agent ID's arguments
    snapshot: NotRequired[bytes | None]  # restore from it; nil: construct afresh
    spin_us: NotRequired[int | float]  # how long to poll for the next call before blocking
    env: NotRequired[dict[str, str]]  # the agent's own environment variables (agent new --env)
    oom: NotRequired[str]  # the message of a MemoryError without one (its memory limit, golemd.driver.limits)
    title: NotRequired[str]  # its process title in ps: `golemd: AGENT_ID` (golemd.host.proctitle)


class CallRequest(TypedDict):
    op: Literal["call"]
    id: int
    method: str
    args: list[Any]
    journal: NotRequired[list[list[Any]]]  # [kind, req, res or nil] by seq: replayed, not run again


class EffectRequest(TypedDict):
    op: Literal["effect"]
    id: int  # the call that makes it
    seq: int  # its number in that call, from 0
    kind: str
    req: bytes  # msgpack of what is asked
    res: NotRequired[bytes]  # a step's result, run in the worker already


class EffectResult(TypedDict):
    op: Literal["effect_result"]
    id: int
    seq: int
    res: bytes  # msgpack of {"value": V} or {"error": {"code", "message", ...}}


class DropRequest(TypedDict):
    op: Literal["drop"]
    id: int  # the first call to drop: it and the ones sent after it, unless started


class Dropped(TypedDict):
    op: Literal["dropped"]
    id: int


class InitReply(TypedDict):
    op: Literal["init"]
    ok: bool
    error: NotRequired[ErrorInfo]  # the constructor's exception, when not ok


class CallResult(TypedDict):
    op: Literal["result"]
    id: int
    ok: bool
    snapshot: NotRequired[bytes | None]  # ok: the new state, nil when unchanged
    result: NotRequired[Any]  # ok: the return value
    code: NotRequired[str]  # not ok: INVOCATION_FAILED or SNAPSHOT_FAILED
    error: NotRequired[ErrorInfo]  # not ok


class WorkerProtocolError(ValueError):
    """A control message that breaks this schema. A ValueError, as the
    unpacker's own errors are: the reader treats both as a broken channel."""


# --- the schema, as the validator reads it ----------------------------------------

_ANY = None  # any msgpack value
_NIL = type(None)
_Spec = dict[str, tuple[tuple[type, ...] | None, bool]]  # field -> (types or _ANY, required)
_Check = Callable[[dict[str, Any]], str | None]


def _error_info(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "'error' must be a map"
    for key in ("type", "message", "traceback"):
        if not isinstance(value.get(key), str):
            return f"'error' needs the string {key!r}"
    return None


def _check_init_reply(msg: dict[str, Any]) -> str | None:
    if msg["ok"]:
        return "an init that succeeded has no 'error'" if "error" in msg else None
    return _error_info(msg.get("error"))


def _check_result(msg: dict[str, Any]) -> str | None:
    if msg["ok"]:
        if "code" in msg or "error" in msg:
            return "a result that succeeded has no 'code' or 'error'"
        return None if "result" in msg else "a result that succeeded needs 'result'"
    if "result" in msg or "snapshot" in msg:
        return "a failed result has no 'result' or 'snapshot'"
    if not isinstance(msg.get("code"), str):
        return "a failed result needs the string 'code'"
    return _error_info(msg.get("error"))


def _check_types(msg: dict[str, Any]) -> str | None:
    for name, description in msg["types"].items():
        if not isinstance(name, str) or not isinstance(description, dict):
            return "'types' must map type names to descriptions"
    return None


_INT, _STR = (int,), (str,)
SCHEMA: dict[tuple[str, str], tuple[_Spec, _Check | None]] = {
    (DAEMON, SPAWN): ({"req": (_INT, True), "type": (_STR, True), "memory_limit": (_INT, True)}, None),
    (TEMPLATE, READY): ({"types": ((dict,), True)}, _check_types),
    (TEMPLATE, LOAD_FAILED): ({"error": (_STR, True)}, None),
    (TEMPLATE, SPAWNED): ({"req": (_INT, True), "pid": (_INT, True)}, None),
    (TEMPLATE, SPAWN_FAILED): ({"req": (_INT, True), "error": (_STR, True)}, None),
    (TEMPLATE, EXITED): ({"pid": (_INT, True), "code": (_INT, True)}, None),
    (TEMPLATE, ASSIGN): ({"type": (_STR, True), "memory_limit": (_INT, True)}, None),
    (DAEMON, INIT): ({"args": ((list,), True), "snapshot": ((bytes, _NIL), False), "env": ((dict,), False),
                      "spin_us": ((int, float), False), "oom": (_STR, False),
                      "title": (_STR, False)}, None),
    (DAEMON, CALL): ({"id": (_INT, True), "method": (_STR, True), "args": ((list,), True),
                      "journal": ((list,), False)}, None),
    (DAEMON, EFFECT_RESULT): ({"id": (_INT, True), "seq": (_INT, True), "res": ((bytes,), True)}, None),
    (WORKER, EFFECT): ({"id": (_INT, True), "seq": (_INT, True), "kind": (_STR, True), "req": ((bytes,), True),
                        "res": ((bytes,), False)}, None),
    (DAEMON, DROP): ({"id": (_INT, True)}, None),
    (WORKER, DROPPED): ({"id": (_INT, True)}, None),
    (WORKER, INIT): ({"ok": ((bool,), True), "error": ((dict,), False)}, _check_init_reply),
    (WORKER, RESULT): ({"id": (_INT, True), "ok": ((bool,), True), "snapshot": ((bytes, _NIL), False),
                        "result": (_ANY, False), "code": (_STR, False), "error": ((dict,), False)},
                       _check_result),
}
"""(sender, op) -> ({field: (types, required)}, check of what types cannot say)."""

MESSAGES: dict[tuple[str, str], type] = {
    (DAEMON, SPAWN): Spawn, (TEMPLATE, READY): Ready, (TEMPLATE, LOAD_FAILED): LoadFailed,
    (TEMPLATE, SPAWNED): Spawned, (TEMPLATE, SPAWN_FAILED): SpawnFailed, (TEMPLATE, EXITED): Exited,
    (TEMPLATE, ASSIGN): Assign, (DAEMON, INIT): InitRequest, (DAEMON, CALL): CallRequest,
    (WORKER, INIT): InitReply, (WORKER, RESULT): CallResult, (DAEMON, DROP): DropRequest,
    (WORKER, DROPPED): Dropped, (WORKER, EFFECT): EffectRequest, (DAEMON, EFFECT_RESULT): EffectResult,
}
"""(sender, op) -> the TypedDict of that message."""

_TABLE = {key: (spec, tuple(f for f, (_, required) in spec.items() if required), check)
          for key, (spec, check) in SCHEMA.items()}
_OPS = {sender: sorted(op for s, op in SCHEMA if s == sender) for sender in (DAEMON, TEMPLATE, WORKER)}


def check_worker_message(msg: Any, sender: str) -> dict[str, Any]:
    """Return `msg` if it is a message `sender` (DAEMON, TEMPLATE or WORKER)
    may send, else raise WorkerProtocolError saying why. On the path of
    every call, so one pass over the fields, as validate_request does."""
    if msg.__class__ is not dict:
        raise WorkerProtocolError(f"a control message must be a map, not {type(msg).__name__}")
    op = msg.get("op")
    entry = _TABLE.get((sender, op)) if op.__class__ is str else None
    if entry is None:
        if sender not in _OPS:
            raise ValueError(f"unknown sender {sender!r}")
        raise WorkerProtocolError(f"the {sender} sent op {str(op)[:40]!r}; it sends {', '.join(_OPS[sender])}")
    spec, required, check = entry
    for field, value in msg.items():
        field_spec = spec.get(field)
        if field_spec is None:
            if field == "op":
                continue
            raise WorkerProtocolError(f"{sender} {op!r} has no field {str(field)[:40]!r}")
        types = field_spec[0]
        if types is not None and (not isinstance(value, types)
                                  or (value.__class__ is bool and bool not in types)):
            names = " or ".join("nil" if t is _NIL else t.__name__ for t in types)
            raise WorkerProtocolError(f"field {field!r} of {sender} {op!r} must be {names}")
    for field in required:
        if field not in msg:
            raise WorkerProtocolError(f"{sender} {op!r} needs the field {field!r}")
    if check is not None:
        problem = check(msg)
        if problem is not None:
            raise WorkerProtocolError(f"{sender} {op!r}: {problem}")
    return msg
