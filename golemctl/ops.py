"""The half of the client that does no I/O: request bytes, reply decoding,
reply timeouts, and the convenience ops both clients expose.

docs/protocol.md is the spec; field names here are the wire names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from golemd.model.errors import Code, GolemError
from golemd.wire.codec import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, pack

if TYPE_CHECKING:
    from datetime import datetime

    from golemd.model.agent_id import AgentId

CONNECT_TIMEOUT = 5.0
# Non-invoke ops answer at once; a daemon silent this long is wedged.
REPLY_TIMEOUT = 60.0


class Call(NamedTuple):
    """One convenience op: the request, and the reply field to return (None: the whole reply)."""

    op: str
    fields: dict[str, Any]
    unwrap: str | None = None


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
    """An awaited invoke may queue behind others for hours and a followed
    stream never ends on its own; the daemon always answers those, so they
    wait without a deadline. Everything else should answer promptly."""
    if op == "invoke" and fields.get("mode", "await") != "trigger":
        return None
    if op == "stream" and fields.get("follow"):
        return None
    return REPLY_TIMEOUT


def protocol_error(message: str) -> GolemError:
    return GolemError(Code.PROTOCOL_ERROR, message)


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


def unwrap(call: Call, reply: dict[str, Any]) -> Any:
    if call.unwrap is None:
        return reply
    if call.unwrap not in reply:
        raise protocol_error(f"golemd's reply to {call.op!r} lacks {call.unwrap!r}")
    return reply[call.unwrap]


def as_map(call: Call, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise protocol_error(f"golemd's reply to {call.op!r} is not a map: {value!r:.200}")
    return value


def as_maps(call: Call, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise protocol_error(f"golemd's reply to {call.op!r} is not a list of maps: {value!r:.200}")
    return value


def unix_seconds(when: float | datetime | None) -> float | None:
    if when is None or isinstance(when, (int, float)):
        return when
    if when.tzinfo is None:
        raise ValueError("schedule_at needs a time zone (a naive datetime is ambiguous)")
    return when.timestamp()


# The convenience ops. Agent IDs are sent as given (str() of an AgentId is its
# canonical form); the daemon validates them.

def invoke(agent: str | AgentId, method: str, args: Sequence[Any] = (),
           idempotency_key: str | None = None, mode: str = "await",
           schedule_at: float | datetime | None = None, timeout: float | None = None,
           stream: bool = False) -> Call:
    return Call("invoke", {
        "agent": str(agent), "method": method, "args": list(args),
        "idempotency_key": idempotency_key, "mode": mode,
        "schedule_at": unix_seconds(schedule_at), "timeout": timeout,
        "stream": True if stream else None,
    })


def agent_op(op: str, agent: str | AgentId, **fields: Any) -> Call:
    """get, interrupt, simulate_crash, resume, delete: they answer {"agent": METADATA}."""
    return Call(op, {"agent": str(agent), **fields}, "agent")


LIST_PAGE = 1000


def list_agents(env: str | None = None, type: str | None = None, status: str | None = None,
                after: str | None = None, limit: int | None = LIST_PAGE) -> Call:
    """One page of `list`; the whole reply, so that its `next` cursor is kept."""
    return Call("list", {"env": env, "type": type, "status": status, "limit": limit, "after": after})


def cancel(agent: str | AgentId, idempotency_key: str) -> Call:
    return Call("cancel", {"agent": str(agent), "idempotency_key": idempotency_key})


def invocations(agent: str | AgentId) -> Call:
    return Call("invocations", {"agent": str(agent)}, "invocations")


def oplog(agent: str | AgentId, last: int | None = None) -> Call:
    return Call("oplog", {"agent": str(agent), "last": last}, "entries")


def stream(agent: str | AgentId, follow: bool = False, last: int | None = None) -> Call:
    return Call("stream", {"agent": str(agent), "follow": follow, "last": last})


def plain(op: str, unwrap: str | None = None) -> Call:
    """types, status, reload, stop: no request fields."""
    return Call(op, {}, unwrap)
