"""`interrupt`: stop an agent's running invocation and hold its queue.

Request: `agent` (str, required), `recover` (bool, optional, default false).

Success: `{"agent": METADATA}`.

Without `recover`: the running invocation's process is killed, its awaiting
callers get `INTERRUPTED`, it goes back to the head of the queue, and the
agent is `Interrupted`: it runs nothing until `resume`. On an agent that is
not running, the queue is held the same way. With `recover: true`: the
process is killed and the invocation is retried at once; its awaiting
callers still get its result (that retry is not counted in `retry_count`);
an agent that is not running loses its process and is `Suspended`.

Errors: `AGENT_NOT_FOUND`, `INVALID_AGENT_ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True), "recover": ((bool,), False)}
RECOVER_WAIT = 5.0  # seconds a recover waits for the new worker before it answers
MUTATING = True


def client(self: Caller, agent: str | AgentId, recover: bool = False) -> Any:
    """Interrupt the agent (with recover=True: kill and retry at once); its metadata."""
    return self.call(Call("interrupt", {"agent": str(agent), "recover": recover}, "agent", MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    recover = bool(req.get("recover"))
    agent.interrupt(recover)
    await d.supervisor.store.commit()
    if recover:
        await agent.recovered(RECOVER_WAIT)  # the metadata of the new worker, not the dying one
    return {"agent": agent.metadata()}
