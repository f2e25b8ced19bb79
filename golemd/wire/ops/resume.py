"""`resume`: let an interrupted agent run again.

Request: `agent` (str, required).

Success: `{"agent": METADATA}`. An `Interrupted` agent runs its interrupted
invocation again (at-least-once) and then its queue. On an agent that is
not interrupted it does nothing.

Errors: `AGENT_NOT_FOUND`, `INVALID_AGENT_ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True)}
MUTATING = True


def client(self: Caller, agent: str | AgentId) -> Any:
    """Resume an interrupted agent; its metadata."""
    return self.call(Call("resume", {"agent": str(agent)}, "agent", MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    agent.resume()
    await d.supervisor.store.commit()
    return {"agent": agent.metadata()}
