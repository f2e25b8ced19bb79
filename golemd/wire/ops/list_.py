"""`list`: agents, a page at a time.

Request (all optional, exact matches):
    `env` (str or nil), `type` (str or nil), `status` (str or nil: an agent
    status such as `Idle`), `limit` (int or nil: at most this many agents,
    not negative), `after` (str or nil: only agents whose ID sorts after this one).

Success: `{"agents": [METADATA, ...], "next": CURSOR}` ordered by agent ID;
`next` is nil on the last page, else the `after` of the next page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, NIL, Call, as_maps, non_negative

if TYPE_CHECKING:
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields, Steps

FIELDS: Fields = {
    "env": ((str, NIL), False),
    "type": ((str, NIL), False),
    "status": ((str, NIL), False),
    "limit": ((int, NIL), False),
    "after": ((str, NIL), False),
}
MUTATING = False
check = non_negative("limit")

PAGE = 1000


def client(self: Caller, env: str | None = None, type: str | None = None,
           status: str | None = None) -> Any:
    """Metadata of every agent matching the filters, ordered by ID (fetched a page at a time)."""
    return self.run(pages(env, type, status))


def pages(env: str | None, type_: str | None, status: str | None, limit: int = PAGE) -> Steps:
    out: list[dict[str, Any]] = []
    after = None
    while True:
        call = Call("list", {"env": env, "type": type_, "status": status, "limit": limit,
                             "after": after}, None, MAP)
        page = yield call
        out += as_maps(call, page.get("agents"))
        after = page.get("next")
        if after is None:
            return out


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agents, cursor = d.supervisor.list(req.get("env"), req.get("type"), req.get("status"),
                                       req.get("limit"), req.get("after"))
    return {"agents": agents, "next": cursor}
