"""`invocations`: an agent's running invocation and its pending queue.

Request: `agent` (str, required).

Success: `{"invocations": [INV, ...]}`: the running one first, then the
queue in order, then scheduled ones by time. INV is `{"idempotency_key",
"method", "args", "status" ("running", "pending", "scheduled"),
"created_at", "schedule_at" (float or nil)}`.

Errors: `AGENT_NOT_FOUND`, `INVALID_AGENT_ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAPS, Call

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True)}
MUTATING = False


def client(self: Caller, agent: str | AgentId) -> Any:
    """The running invocation, then the pending queue, then scheduled ones."""
    return self.call(Call("invocations", {"agent": str(agent)}, "invocations", MAPS))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    return {"invocations": agent.invocations()}
