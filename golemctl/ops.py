"""The half of the client that does no I/O: request bytes, reply decoding,
reply timeouts, and the convenience methods both clients get from the op
definitions in golemd/wire/ops/.

docs/protocol.md is the spec; field names here are the wire names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from golemd.model.errors import Code, GolemError
from golemd.wire import ops as wire_ops
from golemd.wire.codec import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, pack
from golemd.wire.ops import Call, as_map, as_maps, protocol_error, unwrap

__all__ = ["CONNECT_TIMEOUT", "REPLY_TIMEOUT", "Call", "as_map", "as_maps", "check_message",
           "default_reply_timeout", "encode_request", "final_reply", "install_ops", "is_event",
           "protocol_error", "reply_error", "unwrap"]

CONNECT_TIMEOUT = 5.0
# Non-invoke ops answer at once; a daemon silent this long is wedged.
REPLY_TIMEOUT = 60.0


def encode_request(op: str, rid: int, fields: dict[str, Any]) -> bytes:
    """Absent and nil are the same on the wire, so None fields are left out."""
    msg = {"v": PROTOCOL_VERSION, "id": rid, "op": op}
    msg.update((k, v) for k, v in fields.items() if v is not None)
    try:
        data = pack(msg)
    except (TypeError, ValueError, OverflowError) as e:
        raise GolemError(Code.BAD_REQUEST, f"cannot encode the {op!r} request: {e}") from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise GolemError(Code.TOO_LARGE, f"the {op!r} request is {len(data)} bytes; "
                                         f"golemd accepts at most {MAX_MESSAGE_BYTES}")
    return data


def default_reply_timeout(op: str, fields: dict[str, Any]) -> float | None:
    """REPLY_TIMEOUT, unless the op says this request's reply may take any
    time (its `no_reply_deadline`: an awaited invoke, a followed stream);
    the daemon always answers those, so they wait without a deadline."""
    try:
        no_deadline = getattr(wire_ops.load(op), "no_reply_deadline", None)
    except KeyError:  # not an op: the daemon will say so at once
        return REPLY_TIMEOUT
    return None if no_deadline is not None and no_deadline(fields) else REPLY_TIMEOUT


def check_message(msg: Any) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise protocol_error(f"golemd sent a {type(msg).__name__} where a map was expected")
    return msg


def is_event(msg: dict[str, Any]) -> bool:
    return "event" in msg and "error" not in msg


def reply_error(msg: dict[str, Any]) -> GolemError | None:
    err = msg.get("error")
    if err is None:
        return None
    if not isinstance(err, dict):
        return protocol_error(f"golemd sent a malformed error: {err!r:.200}")
    return GolemError.from_wire(err)


def final_reply(msg: dict[str, Any]) -> dict[str, Any]:
    """The success fields of a final reply, or raise its error."""
    err = reply_error(msg)
    if err is not None:
        raise err
    return {k: v for k, v in msg.items() if k != "id"}


# --- the convenience methods ----------------------------------------------------


class OpMethod:
    """The method NAME of a client class: golemd.wire.ops.NAME.client, whose
    first parameter is the client. Its module is imported when the method is
    first looked up (golemctl runs one command per process and must not
    import every op), and then the function replaces this descriptor."""

    __slots__ = ("name", "owner", "wrap")

    def __init__(self, owner: type, name: str, wrap: Callable[[Any], Any] | None):
        self.owner = owner
        self.name = name
        self.wrap = wrap

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        fn = wire_ops.load(self.name).client
        if self.wrap is not None:
            fn = self.wrap(fn)
        setattr(self.owner, self.name, fn)
        return fn if obj is None else fn.__get__(obj, objtype)


def install_ops(cls: type, wrap: Callable[[Any], Any] | None = None) -> None:
    """Give `cls` one method per op (docs/protocol.md), named after it.
    `wrap` turns an op's client half into the method (AsyncClient makes it a
    coroutine function); by default it is the method as it is."""
    for name in wire_ops.NAMES:
        if name in cls.__dict__:
            raise TypeError(f"op {name!r} would replace {cls.__name__}.{name}")
        setattr(cls, name, OpMethod(cls, name, wrap))
