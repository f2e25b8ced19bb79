"""`promise_list`: durable promises, oldest first.

Request (all optional): `agent` (str or nil): only the promises made by this
agent's invocations (an agent ID, in any spelling: its canonical form is
used); `all` (bool or nil): completed promises too (default: pending only).

Success: `{"promises": [PROMISE, ...]}` oldest first, PROMISE as in
`promise_get`. An agent with no promises (or none by that ID) gives an
empty list.

Errors: `INVALID_AGENT_ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAPS, NIL, Call

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str, NIL), False), "all": ((bool, NIL), False)}
MUTATING = False


def client(self: Caller, agent: str | AgentId | None = None, all: bool = False) -> Any:
    """Pending promises, oldest first (the agent's, or everyone's; with `all`, completed ones too)."""
    return self.call(Call("promise_list", {"agent": None if agent is None else str(agent),
                                           "all": all or None}, "promises", MAPS))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = req.get("agent")
    name = None if agent is None else d.supervisor.parse_id(agent).canonical
    rows = d.supervisor.store.list_promises(name, pending=not req.get("all"))
    info = d.supervisor.durable.promise_info
    return {"promises": [info(row) for row in rows]}
