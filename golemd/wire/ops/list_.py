"""`list`: agents, a page at a time.

Request (all optional):
    `env` (str or nil), `type` (str or nil), `status` (str or nil: an agent
    status such as `Idle`, in any case): exact matches;
    `filters` (array or nil): every one must pass; each is a string
    `PROP OP VALUE` in Golem's syntax (`status = Idle`, `pending > 0`,
    `name startswith Counter`) or an array [PROP, OP, VALUE]
    (golemd.model.filters; a bad one is `BAD_REQUEST` saying what is wrong);
    `limit` (int or nil: at most this many agents, at least 1), `after`
    (str or nil: only agents whose ID sorts after this one).

Success: `{"agents": [METADATA, ...], "next": CURSOR}` ordered by agent ID;
`next` is nil on the last page, else the `after` of the next page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, NIL, Call, as_maps

if TYPE_CHECKING:
    from collections.abc import Sequence

    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields, Steps

FIELDS: Fields = {
    "env": ((str, NIL), False),
    "type": ((str, NIL), False),
    "status": ((str, NIL), False),
    "filters": ((list, NIL), False),
    "limit": ((int, NIL), False),
    "after": ((str, NIL), False),
}
MUTATING = False


def check(msg: dict[str, Any]) -> str | None:
    # A page of 0 would be empty with no cursor, which says "no more agents".
    limit = msg.get("limit")
    if limit is not None and limit < 1:
        return "field 'limit' must be at least 1"
    return None


PAGE = 1000


def client(self: Caller, env: str | None = None, type: str | None = None,
           status: str | None = None, filters: Sequence[Any] | None = None) -> Any:
    """Metadata of every agent matching the filters, ordered by ID (fetched a
    page at a time). `filters`: strings `PROP OP VALUE` or [PROP, OP, VALUE]
    (docs/protocol.md, `list`)."""
    return self.run(pages(env, type, status, filters))


def pages(env: str | None, type_: str | None, status: str | None,
          filters: Sequence[Any] | None = None, limit: int = PAGE) -> Steps:
    """The requests of client(): every page; returns the agents."""
    agents, _ = yield from paged(env, type_, status, filters, limit=limit)
    return agents


def paged(env: str | None, type_: str | None, status: str | None,
          filters: Sequence[Any] | None = None, max_count: int | None = None,
          after: str | None = None, limit: int = PAGE) -> Steps:
    """The requests of one listing, `limit` agents at a time: at most
    `max_count` agents (None: all) after `after`. Returns (agents, cursor):
    the cursor is the `after` of what follows, None when nothing does.
    `client.run(paged(...))` runs it (golemctl's `agent list --max-count`)."""
    out: list[dict[str, Any]] = []
    wire_filters = list(filters) if filters else None
    while True:
        size = limit if max_count is None else min(limit, max_count - len(out))
        call = Call("list", {"env": env, "type": type_, "status": status, "filters": wire_filters,
                             "limit": size, "after": after}, None, MAP)
        page = yield call
        out += as_maps(call, page.get("agents"))
        after = page.get("next")
        if after is None or (max_count is not None and len(out) >= max_count):
            return out, after


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from golemd.model.filters import parse_filters

    filters = parse_filters(req.get("filters"))
    agents, cursor = d.supervisor.list(req.get("env"), req.get("type"), req.get("status"),
                                       req.get("limit"), req.get("after"), filters)
    return {"agents": agents, "next": cursor}
