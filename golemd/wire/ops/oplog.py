"""`oplog`: an agent's history.

Request: `agent` (str, required), `last` (int or nil, optional: only the
newest N entries; not negative), `from` (int or nil, optional: only the
entries whose index is N or more; not negative), `query` (str or nil,
optional: only the entries matching it, golemd.model.oplog_query's grammar).
`from` and `query` filter first, in the daemon; `last` then keeps the newest
N of what is left. Indexes are always those of the whole log.

Success: `{"entries": [ENTRY, ...]}` oldest first. ENTRY is `{"index": N,
"ts": UNIX_SECONDS, "kind": KIND}` with, where they apply,
`idempotency_key`, `method`, `detail`, and the content: `args` (and
`schedule_at`, `timeout`) on `enqueued`, `result` on `completed`, `error`
(`{"code", "message"}`) on `failed`, `effect` (`{"seq", "kind", "target",
"callee_key", "request", "until", "result" or "error", "waiting"}`) on `effect` and
`effect_done`, `omitted` for values too large to show. Kinds: `created`,
`enqueued`, `started`, `completed`, `failed`, `canceled`, `interrupted`,
`resumed`, `process_died`, `retried`, `suspended`, `resumed_from_snapshot`,
`constructor_failed`, `effect`, `effect_done`.

Errors: `AGENT_NOT_FOUND`, `INVALID_AGENT_ID`, `BAD_REQUEST` (a query that
cannot be parsed: the message starts with "bad query: ").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAPS, NIL, Call, non_negative

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True), "last": ((int, NIL), False), "from": ((int, NIL), False),
                  "query": ((str, NIL), False)}
MUTATING = False
check = non_negative("last", "from")

BAD_QUERY = "bad query: "
"""How the message of a BAD_REQUEST about the query starts (golemctl makes it a usage error)."""


def client(self: Caller, agent: str | AgentId, last: int | None = None, from_index: int | None = None,
           query: str | None = None) -> Any:
    """The agent's history, oldest first: the entries from index `from_index`
    on that match `query` (golemd.model.oplog_query), the newest `last` of them."""
    return self.call(Call("oplog", {"agent": str(agent), "last": last, "from": from_index, "query": query},
                          "entries", MAPS))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    last, start, text = req.get("last"), req.get("from"), req.get("query")
    query = None
    if text is not None and text.strip():
        from golemd.model.errors import Code, GolemError
        from golemd.model.oplog_query import QueryError, parse

        try:
            query = parse(text)
        except QueryError as exc:
            raise GolemError(Code.BAD_REQUEST, f"{BAD_QUERY}{exc}") from None
    agent = d.supervisor.find(req["agent"])
    if query is None and not start:
        return {"entries": d.supervisor.store.oplog(agent.name, last)}
    entries = [e for e in d.supervisor.store.oplog(agent.name, None)
               if e["index"] >= (start or 0) and (query is None or query.matches(e))]
    from golemd.model.oplog_query import newest_from

    return {"entries": entries[newest_from(len(entries), last):]}
