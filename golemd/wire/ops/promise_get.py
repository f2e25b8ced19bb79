"""`promise_get`: one durable promise.

Request: `promise_id` (str, required).

Success: `{"promise": PROMISE}`, PROMISE = `{"promise_id", "agent_id" (the
agent whose invocation made it), "idempotency_key" (that invocation's key),
"created_at" (Unix seconds), "age_seconds", "completed" (bool),
"completed_at" (Unix seconds or nil)}` and, once completed, `"value"`.

Errors: `NOT_FOUND` (no promise with that ID).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.model.errors import Code, GolemError
from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"promise_id": ((str,), True)}
MUTATING = False


def client(self: Caller, promise_id: str) -> Any:
    """The promise (its agent, state and, once completed, value); NOT_FOUND if unknown."""
    return self.call(Call("promise_get", {"promise_id": promise_id}, "promise", MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    row = d.supervisor.store.get_promise(req["promise_id"])
    if row is None:
        raise GolemError(Code.NOT_FOUND, f"no promise {req['promise_id']!r}")
    return {"promise": d.supervisor.durable.promise_info(row)}
