"""`oplog`: an agent's history.

Request: `agent` (str, required), `last` (int or nil, optional: only the
newest N entries; not negative).

Success: `{"entries": [ENTRY, ...]}` oldest first. ENTRY is `{"index": N,
"ts": UNIX_SECONDS, "kind": KIND}` with, where they apply,
`idempotency_key`, `method`, `detail`. Kinds: `created`, `enqueued`,
`started`, `completed`, `failed`, `canceled`, `interrupted`, `resumed`,
`process_died`, `retried`, `suspended`, `resumed_from_snapshot`,
`constructor_failed`.

Errors: `AGENT_NOT_FOUND`, `INVALID_AGENT_ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAPS, NIL, Call, non_negative

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True), "last": ((int, NIL), False)}
MUTATING = False
check = non_negative("last")


def client(self: Caller, agent: str | AgentId, last: int | None = None) -> Any:
    """The agent's history, oldest first (the newest `last` entries)."""
    return self.call(Call("oplog", {"agent": str(agent), "last": last}, "entries", MAPS))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    return {"entries": d.supervisor.store.oplog(agent.name, req.get("last"))}
