"""The client wire protocol: version, limits, and the shape of every request.

msgpack maps, back to back on a Unix stream socket. Import-safe: no asyncio,
no side effects, so golemctl can import it and still start fast.
docs/protocol.md is the prose version of this module; keep them together.
"""

from __future__ import annotations

from typing import Any

import msgpack

from golemd.model.errors import Code, GolemError

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_IDEMPOTENCY_KEY = 256
MAX_TIMEOUT = 1e9  # seconds (31 years): beyond it a number is a mistake, and the store's integers end
MAX_TIMESTAMP = 1e11  # seconds since the epoch (the year 5138)
MAX_NAME = 256

_NUM = (int, float)
_OPT = object()  # marker: the field may be absent or nil

# op -> {field: (types, required)}; "v", "id" and "op" are checked for every op.
OPS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "invoke": {
        "agent": ((str,), True),
        "method": ((str,), True),
        "args": ((list,), False),
        "idempotency_key": ((str, type(None)), False),
        "mode": ((str,), False),
        "schedule_at": ((*_NUM, type(None)), False),
        "timeout": ((*_NUM, type(None)), False),
        "stream": ((bool,), False),
    },
    "get": {"agent": ((str,), True)},
    "list": {
        "env": ((str, type(None)), False),
        "type": ((str, type(None)), False),
        "status": ((str, type(None)), False),
        "limit": ((int, type(None)), False),
        "after": ((str, type(None)), False),
    },
    "cancel": {"agent": ((str,), True), "idempotency_key": ((str,), True)},
    "interrupt": {"agent": ((str,), True), "recover": ((bool,), False)},
    "simulate_crash": {"agent": ((str,), True)},
    "resume": {"agent": ((str,), True)},
    "delete": {"agent": ((str,), True)},
    "invocations": {"agent": ((str,), True)},
    "oplog": {"agent": ((str,), True), "last": ((int, type(None)), False)},
    "stream": {"agent": ((str,), True), "follow": ((bool,), False), "last": ((int, type(None)), False)},
    "status": {},
    "types": {},
    "reload": {},
    "stop": {},
}

MODES = ("await", "trigger")


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
    schema = OPS.get(op) if isinstance(op, str) else None  # type: ignore[arg-type]
    if schema is None:
        raise _bad(rid, f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
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
    for field in _REQUIRED[op]:  # type: ignore[index]
        if field not in msg:
            raise _bad(rid, f"op {op!r} needs the field {field!r}")
    if op == "invoke":
        if msg.get("mode") is not None and msg["mode"] not in MODES:
            raise _bad(rid, "field 'mode' must be \"await\" or \"trigger\"")
        key = msg.get("idempotency_key")
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            raise _bad(rid, f"an idempotency key must have 1 to {MAX_IDEMPOTENCY_KEY} characters")
        t = msg.get("timeout")
        if t is not None and not 0 < t <= MAX_TIMEOUT:
            raise _bad(rid, f"field 'timeout' must be a positive number of seconds, at most {MAX_TIMEOUT:g}")
        s = msg.get("schedule_at")
        if s is not None and not -MAX_TIMESTAMP < s < MAX_TIMESTAMP:
            raise _bad(rid, "field 'schedule_at' must be a Unix time in seconds")
    elif "last" in msg or "limit" in msg:
        for field in ("last", "limit"):
            if msg.get(field) is not None and msg[field] < 0:
                raise _bad(rid, f"field {field!r} must not be negative")
    return rid, op, msg  # type: ignore[return-value]


_COMMON = frozenset({"v", "id", "op"})
_REQUIRED = {op: tuple(f for f, (_, required) in schema.items() if required) for op, schema in OPS.items()}


def _bad(rid: int | None, message: str) -> GolemError:
    e = GolemError(Code.BAD_REQUEST, message)
    e.request_id = rid  # type: ignore[attr-defined]
    return e


# One Packer per process: packb() makes a new one per call, and each allocates
# a 256 KiB buffer, which a daemon or worker that runs cold (W2's 100 workers
# taking turns) pays for in cache misses. Packer.pack resets itself on error,
# but its buffer never shrinks: after a message over 1 MiB it is replaced.
_packer = msgpack.Packer(use_bin_type=True)
_packing = False  # agent code run while packing (a mapping's items()) may pack too


READ_BYTES = 1 << 16


def small_reads(transport: Any) -> None:
    """Have an asyncio transport read at most 64 KiB at a time. It reads
    `max_size` (256 KiB) by default, into a new bytes object: glibc serves an
    allocation that large with mmap, and then the read of a 100-byte message
    costs about 14 us (mmap, mremap, munmap, a page fault) instead of 2, twice
    per warm call. A bigger message takes more reads, at no cost worth naming."""
    if hasattr(transport, "max_size"):
        transport.max_size = READ_BYTES


def pack(obj: Any) -> bytes:
    global _packer, _packing
    if _packing:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    _packing = True
    try:
        data: bytes = _packer.pack(obj)
    finally:
        _packing = False
    if len(data) > 1 << 20:
        _packer = msgpack.Packer(use_bin_type=True)
    return data


def make_unpacker(max_buffer_size: int = MAX_MESSAGE_BYTES, strict_map_key: bool = True) -> msgpack.Unpacker:
    """An Unpacker whose limits bound what one message can make us allocate."""
    return msgpack.Unpacker(
        raw=False,
        max_buffer_size=max_buffer_size,
        strict_map_key=strict_map_key,
        max_str_len=max_buffer_size,
        max_bin_len=max_buffer_size,
        max_array_len=1_000_000,
        max_map_len=1_000_000,
        max_ext_len=0,
    )


def error_reply(rid: int | None, err: GolemError) -> dict[str, Any]:
    return {"id": rid, "error": err.to_wire()}
