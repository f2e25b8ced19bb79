"""`simulate_crash`: kill an agent's process as a crash would.

Request: `agent` (str, required).

Success: `{"agent": METADATA}`. The same as `interrupt` with `recover:
true`: the invocation is retried at once and its awaiting callers still get
its result; an idle agent gets a new worker from its saved state and stays
Idle. The reply waits (at most 5 s) for the new worker, so that its
metadata is what the agent is left with.

Errors: `AGENT_NOT_FOUND`, `INVALID_AGENT_ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call, interrupt

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True)}
MUTATING = True


def client(self: Caller, agent: str | AgentId) -> Any:
    """Kill the agent's process; it recovers and retries. Its metadata."""
    return self.call(Call("simulate_crash", {"agent": str(agent)}, "agent", MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    return await interrupt.handle(d, {**req, "recover": True}, emit)
