"""`delete`: remove an agent and everything stored for it.

Request: `agent` (str, required).

Success: `{"agent": METADATA}`, its last metadata before deletion. The
agent, its queue, saved state and stored outcomes are removed; a running
invocation is stopped (its callers get `INTERRUPTED`), pending ones are
dropped (their callers get `CANCELED`). The next invocation creates the
agent afresh.

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
    """Delete the agent; returns its last metadata."""
    return self.call(Call("delete", {"agent": str(agent)}, "agent", MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    return {"agent": await d.supervisor.delete(agent)}
