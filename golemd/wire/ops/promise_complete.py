"""`promise_complete`: complete a durable promise (DESIGN.md §5).

Request: `promise_id` (str, required): the ID `promise()` gave the agent
(`p.id`); `value` (any msgpack value, optional; default nil): what the
promise is completed with.

Success: `{"promise_id": ID, "completed": true}`, once the completion is
durable. The invocations waiting on the promise go on with `value`.

Errors: `NOT_FOUND` (no promise with that ID: never made, or its agent was
deleted), `ALREADY_COMPLETED` (it was completed before: the first completion
wins and its value stays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, NIL, Call

if TYPE_CHECKING:
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

# Every msgpack value (nil: the same as absent, the default).
VALUE_TYPES = (bool, int, float, str, bytes, list, dict, NIL)

FIELDS: Fields = {"promise_id": ((str,), True), "value": (VALUE_TYPES, False)}
MUTATING = True


def client(self: Caller, promise_id: str, value: Any = None) -> Any:
    """Complete a promise with `value`: {"promise_id", "completed": True}."""
    return self.call(Call("promise_complete", {"promise_id": promise_id, "value": value}, None, MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    d.supervisor.durable.complete(req["promise_id"], req.get("value"))
    await d.supervisor.store.commit()
    return {"promise_id": req["promise_id"], "completed": True}
