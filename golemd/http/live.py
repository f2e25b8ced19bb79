"""Live views over server-sent events: the page opens one EventSource and
the server sends a `view` event with the whole view (a JSON map) whenever it
changed, read from the daemon every TICK seconds; an agent's page gets
`output` events as its lines are printed, at once. A stream ends when the
daemon stops (`event: end`) or its session does (`event: logout`: logged
out or expired), and sends a comment every KEEPALIVE seconds so that
proxies keep it open.

- `GET /api/live/agents?type=&status=&env=&after=&limit=`: {"status": the
  daemon's status, "list": one page of agents as the `list` op gives it,
  "prev": the `after` of the page before ("" when that is the first page),
  null on the first page}.
- `GET /api/live/agent?agent=ID`: {"agent": get's metadata, "invocations":
  the running one and the queue, "promises": its promises, "oplog": the
  newest OPLOG_LAST entries with content}; {"deleted": true} once it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from golemd.driver import listing
from golemd.http.api import call_op, dumps
from golemd.http.auth import COOKIE
from golemd.model.errors import Code, GolemError

TICK = 0.25
KEEPALIVE = 15.0
OPLOG_LAST = 50
PAGE = 50
MAX_PAGE = 500
MAX_UNSENT = 1000


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/live/agents", agents_view)
    app.router.add_get("/api/live/agent", agent_view)


async def agents_view(request: web.Request) -> web.StreamResponse:
    daemon = request.app["http"].daemon
    q = request.query
    fields: dict[str, Any] = {name: q[name] for name in ("type", "status", "env", "after") if q.get(name)}
    try:
        fields["limit"] = min(MAX_PAGE, max(1, int(q.get("limit", PAGE))))
    except ValueError:
        fields["limit"] = PAGE

    async def view(_send: Send) -> dict[str, Any]:
        status = await call_op(daemon, "status", {})
        del status["uptime"]  # else every view would differ from the last
        out = {"status": status, "list": await call_op(daemon, "list", fields), "prev": None}
        if fields.get("after"):
            out["prev"] = listing.cursor_before(daemon.supervisor.agents, fields.get("env"),
                                                fields.get("type"), fields.get("status"),
                                                fields["limit"], fields["after"]) or ""
        return out

    return await stream(request, view)


async def agent_view(request: web.Request) -> web.StreamResponse:
    daemon = request.app["http"].daemon
    agent_id = request.query.get("agent", "")
    output = _Output()

    async def view(send: Send) -> dict[str, Any]:
        try:
            meta = (await call_op(daemon, "get", {"agent": agent_id}))["agent"]
        except GolemError as err:
            if err.code == Code.AGENT_NOT_FOUND:
                output.follow(None, send)
                return {"deleted": True}
            raise
        canonical = meta["agent_id"]
        # an agent created (or created again) after the page opened has its own output
        output.follow(daemon.supervisor.agents.get(canonical), send)
        promises = (await call_op(daemon, "promise_list", {"agent": canonical, "all": True}))["promises"]
        for p in promises:
            del p["age_seconds"]  # else every view would differ from the last; created_at says it
        return {
            "agent": meta,
            "invocations": (await call_op(daemon, "invocations", {"agent": canonical}))["invocations"],
            "promises": promises,
            "oplog": (await call_op(daemon, "oplog", {"agent": canonical, "last": OPLOG_LAST}))["entries"],
        }

    return await stream(request, view, lambda: output.stop())


Send = Callable[[str, Any], None]


class _Output:
    """The output lines of the agent object a page shows, as they come."""

    def __init__(self) -> None:
        self.agent: Any = None
        self.stop: Callable[[], None] = lambda: None

    def follow(self, agent: Any, send: Send) -> None:
        if agent is self.agent:
            return
        self.stop()
        self.agent = agent
        self.stop = lambda: None
        if agent is None:
            return
        for entry in agent.output.recent(100):
            send("output", entry)

        def follower(entry: dict[str, Any] | None, _reason: str) -> None:
            if entry is not None:
                send("output", entry)

        agent.output.followers.add(follower)
        self.stop = lambda: agent.output.followers.discard(follower)


async def stream(request: web.Request, view: Callable[[Send], Awaitable[dict[str, Any]]],
                 done: Callable[[], None] | None = None) -> web.StreamResponse:
    """Send `view(send)` whenever it changes, and what `send` is given at once;
    `done` runs when the stream ends."""
    http = request.app["http"]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    chunks: list[str] = []
    wake = asyncio.Event()

    def send(event: str, data: Any) -> None:
        if len(chunks) < MAX_UNSENT:  # a reader that fell behind loses lines, not our memory
            chunks.append(f"event: {event}\ndata: {dumps(data)}\n\n")
        wake.set()

    last = None
    quiet = 0.0
    loop = asyncio.get_running_loop()
    next_view = 0.0
    sid = request.cookies.get(COOKIE)
    try:
        # the gate let the stream in; it ends with its session (logout, expiry), not just with the page
        while not http.stopping.is_set() and http.logins.session(sid) is not None:
            now = loop.time()
            if now >= next_view:
                next_view = now + TICK
                try:
                    current = dumps(await view(send))
                except GolemError as err:
                    current = dumps({"error": {"code": str(err.to_wire()["code"]), "message": err.message}})
                if current != last:
                    last = current
                    chunks.append(f"event: view\ndata: {current}\n\n")
            if chunks:
                data = "".join(chunks).encode()
                chunks.clear()
                await response.write(data)
                quiet = 0.0
            elif quiet >= KEEPALIVE:
                await response.write(b": keep-alive\n\n")
                quiet = 0.0
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, next_view - loop.time()))
            quiet += TICK
        await response.write(b"event: end\ndata: {}\n\n" if http.stopping.is_set()
                             else b"event: logout\ndata: {}\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page went away
    finally:
        if done is not None:
            done()
    return response
