"""The registry of ops (name -> its module), built from golemd/wire/ops/, and
`validate_request`, which checks every request against it.

The daemon imports this module; golemctl does not (it loads one op module at
a time, see golemd.wire.ops.load).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from golemd.model.errors import Code, GolemError
from golemd.wire.ops import NAMES, PROTOCOL_VERSION, load

if TYPE_CHECKING:
    from golemd.wire.ops.context import Check, Fields, Handler

REGISTRY: dict[str, ModuleType] = {name: load(name) for name in NAMES}

OPS: dict[str, Fields] = {name: op.FIELDS for name, op in REGISTRY.items()}
"""op -> {field: (types, required)}; "v", "id" and "op" are checked for every op."""

HANDLERS: dict[str, Handler] = {name: op.handle for name, op in REGISTRY.items()
                                if op.handle is not None}
"""The daemon half of every op but invoke (golemd.server.connection answers that one)."""

MUTATING = frozenset(name for name, op in REGISTRY.items() if op.MUTATING)

# op -> (fields, required fields, check or None): one lookup per request.
_TABLE: dict[str, tuple[Fields, tuple[str, ...], Check | None]] = {
    name: (op.FIELDS, tuple(f for f, (_, required) in op.FIELDS.items() if required),
           getattr(op, "check", None))
    for name, op in REGISTRY.items()
}
_KNOWN = ", ".join(sorted(OPS))
_COMMON = frozenset({"v", "id", "op"})


def validate_request(msg: Any) -> tuple[int | None, str, dict[str, Any]]:
    """Check a decoded request; return (id, op, msg) or raise GolemError.

    The id is returned even when the rest is wrong, so the error reply can
    echo it; the exception carries it as `.request_id`. Every request goes
    through here, so it is written for speed: one pass over the fields.
    """
    if not isinstance(msg, dict):
        raise _bad(None, f"a request must be a map, got {type(msg).__name__}")
    rid = msg.get("id")
    for k in msg:
        if k.__class__ is not str and not isinstance(k, str):
            raise _bad(rid if isinstance(rid, int) and not isinstance(rid, bool) else None,
                       "a request's keys must be strings")
    if rid.__class__ is not int and (not isinstance(rid, int) or isinstance(rid, bool)):
        raise _bad(None, "the request needs an integer 'id'")
    if "v" not in msg:
        raise _bad(rid, "the request needs 'v' (the protocol version, 1)")
    if msg["v"].__class__ is not int or msg["v"] != PROTOCOL_VERSION:
        e = GolemError(Code.UNSUPPORTED_VERSION,
                       f"protocol version {msg['v']!r} is not supported; this daemon speaks {PROTOCOL_VERSION}")
        e.request_id = rid  # type: ignore[attr-defined]
        raise e
    op = msg.get("op")
    entry = _TABLE.get(op) if isinstance(op, str) else None
    if entry is None:
        raise _bad(rid, f"unknown op {op!r}; known ops: {_KNOWN}")
    schema, required_fields, check = entry
    for field, value in msg.items():
        spec = schema.get(field)
        if spec is None:
            if field in _COMMON:
                continue
            raise _bad(rid, f"op {op!r} has no field {field!r}")
        types, required = spec
        if value is None and not required:
            continue  # an optional field may be nil: the same as absent
        if not isinstance(value, types) or (value.__class__ is bool and bool not in types):
            names = " or ".join("nil" if t is type(None) else t.__name__ for t in types)
            raise _bad(rid, f"field {field!r} of op {op!r} must be {names}")
    for field in required_fields:
        if field not in msg:
            raise _bad(rid, f"op {op!r} needs the field {field!r}")
    if check is not None:
        problem = check(msg)
        if problem is not None:
            raise _bad(rid, problem)
    return rid, op, msg  # type: ignore[return-value]


def _bad(rid: int | None, message: str) -> GolemError:
    e = GolemError(Code.BAD_REQUEST, message)
    e.request_id = rid  # type: ignore[attr-defined]
    return e
