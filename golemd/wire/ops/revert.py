"""`revert`: take an agent's state back to before its last invocations (Golem's `agent revert`).

Request: `agent` (str, required) and exactly one of
`number_of_invocations` (int, at least 1): the last N invocations that ran
(completed or failed), or `last_oplog_index` (int, at least 0): every
invocation that finished after that oplog entry.

The agent's state goes back to what it was before them, and they are
forgotten: their outcomes, effects and promises are dropped, so their keys
can run again; completed_count and failed_count go down by them. Pending
invocations stay queued and run on the reverted state. A revert that
forgets nothing (an index past the last finish) succeeds.

Success: `{"agent": METADATA, "reverted": [KEY, ...]}`, oldest first.

Errors: `TOO_LATE` (an invocation is running or waiting: revert once it has
finished, or interrupt it first; or the state before them is not kept any
more: older invocations were pruned by retention), `BAD_REQUEST` (neither
or both fields, out of range, or more invocations than the store keeps),
`AGENT_NOT_FOUND`, `INVALID_AGENT_ID`, `STORAGE_FULL`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, NIL, Call

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True), "number_of_invocations": ((int, NIL), False),
                  "last_oplog_index": ((int, NIL), False)}
MUTATING = True


def check(msg: dict[str, Any]) -> str | None:
    n, i = msg.get("number_of_invocations"), msg.get("last_oplog_index")
    if n is not None and n < 1:
        return "field 'number_of_invocations' must be at least 1"
    if i is not None and i < 0:
        return "field 'last_oplog_index' must be 0 or more"
    return None


def client(self: Caller, agent: str | AgentId, number_of_invocations: int | None = None,
           last_oplog_index: int | None = None) -> Any:
    """Revert the agent's last invocations: {"agent": METADATA, "reverted": [KEY, ...]}."""
    return self.call(Call("revert", {"agent": str(agent), "number_of_invocations": number_of_invocations,
                                     "last_oplog_index": last_oplog_index}, None, MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from golemd.model.errors import Code, GolemError

    sup = d.supervisor
    agent = sup.find(req["agent"])
    if (req.get("number_of_invocations") is None) == (req.get("last_oplog_index") is None):
        raise GolemError(Code.BAD_REQUEST, "give exactly one of 'number_of_invocations' and 'last_oplog_index'")
    keys = await sup.revert(agent, req.get("number_of_invocations"), req.get("last_oplog_index"))
    return {"agent": agent.metadata(), "reverted": keys}
