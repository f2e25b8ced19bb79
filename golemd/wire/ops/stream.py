"""`stream`: an agent's output.

Request: `agent` (str, required), `follow` (bool, optional, default false),
`last` (int or nil, optional, not negative: the newest N buffered lines, all
of them when fewer are buffered, none for 0; default all buffered).

Events: each line as `{"type": "output", "stream", "line", "ts",
"idempotency_key"}`: the buffered ones (the newest `last`), then, with
`follow`, each new line as the agent prints it.

Success: without `follow`, `{"ended": "done"}` after the buffered lines;
with `follow`, only when the agent is deleted (`"deleted"`) or the daemon
stops (`"shutdown"`).

Errors: `AGENT_NOT_FOUND`, `INVALID_AGENT_ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, NIL, Call, non_negative

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, EventCallback, Fields

FIELDS: Fields = {
    "agent": ((str,), True),
    "follow": ((bool,), False),
    "last": ((int, NIL), False),
}
MUTATING = False
check = non_negative("last")


def client(self: Caller, agent: str | AgentId, on_event: EventCallback | None,
           follow: bool = False, last: int | None = None) -> Any:
    """Pass the agent's buffered (and with follow, future) output lines to
    on_event; returns {"ended": "done" | "deleted" | "shutdown"}."""
    return self.call(Call("stream", {"agent": str(agent), "follow": follow, "last": last},
                          None, MAP), on_event)


def no_reply_deadline(fields: dict[str, Any]) -> bool:
    """A followed stream ends only with the agent or the daemon."""
    return bool(fields.get("follow"))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent = d.supervisor.find(req["agent"])
    for entry in agent.output.recent(req.get("last")):
        emit(entry)
    if not req.get("follow"):
        return {"ended": "done"}
    import asyncio  # here: golemctl imports this module and must not pay for asyncio

    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def follower(entry: dict[str, Any] | None, reason: str) -> None:
        if entry is not None:
            emit(entry)
        elif not ended.done():
            ended.set_result(reason)

    agent.output.followers.add(follower)
    try:
        return {"ended": await ended}
    finally:
        agent.output.followers.discard(follower)
