"""`cancel`: remove a pending invocation before it starts.

Request: `agent` (str, required), `idempotency_key` (str, required).

Success: `{"idempotency_key": K, "canceled": true}`: it was pending (or
scheduled) and will never run, or it was already canceled. Its awaiting
callers get `CANCELED`, once the cancel commits: the answer waits for that
commit too. A commit that fails answers its error (`STORAGE_FULL` on a
full disk): the invocation is pending still, back in its place in the queue.

Errors: `TOO_LATE` ("has already started" when running, "already
completed" when completed or failed; nothing changes), `NOT_FOUND` (the key
is unknown on this agent), `AGENT_NOT_FOUND`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True), "idempotency_key": ((str,), True)}
MUTATING = True


def client(self: Caller, agent: str | AgentId, idempotency_key: str) -> Any:
    """Cancel a pending invocation: {"idempotency_key", "canceled": True}."""
    return self.call(Call("cancel", {"agent": str(agent), "idempotency_key": idempotency_key},
                          None, MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    agent.cancel(req["idempotency_key"])
    await d.supervisor.store.commit()
    return {"idempotency_key": req["idempotency_key"], "canceled": True}
