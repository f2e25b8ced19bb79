"""Which node serves a request: this one, when it owns the agent (or takes
it, when no node does), or the owner, to which it is forwarded.

Every request naming an agent goes through here in cluster mode: invokes
from clients and from agents (durable calls), and the agent ops (get,
cancel, interrupt, ...). The fast path, an agent this node owns, is one
dict lookup. A request forwarded to a node that no longer owns the agent
comes back NOT_OWNER, and one whose owner dies with it unanswered
(PeerLost) is sent again once the agent has a new owner: an invoke under
the same idempotency key (one is chosen here before the first send), so
that it attaches to the invocation the new owner recovered, or gets its
stored outcome. A request served here whose agent this node loses on the
way (its lease moved) is answered NOT_OWNER by the driver and re-routed
the same way. Retries end after RETRY_FOR, with NODE_UNREACHABLE.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from golemd.cluster.peer import PeerLost
from golemd.model.errors import Code, GolemError
from golemd.wire.codec import error_reply

if TYPE_CHECKING:
    from golemd.cluster.node import Node

log = logging.getLogger("golemd.cluster")

Done = Callable[[dict[str, Any] | None, GolemError | None], None]
Listener = Callable[[dict[str, Any]], None] | None

# Ops served by the agent's owner; the rest by the node asked (list gathers every node's).
AGENT_OPS = frozenset({"get", "new", "cancel", "interrupt", "simulate_crash", "resume", "delete", "revert",
                       "invocations", "oplog", "stream"})
RETRIABLE = frozenset({Code.NOT_OWNER.value})


class Router:
    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def retry_for(self) -> float:
        return 3 * self.node.lease_timeout + 10.0

    # -- invokes -----------------------------------------------------------------------

    def submit(self, req: dict[str, Any], listener: Listener, done: Done, forwarded: bool = False) -> None:
        """Supervisor.submit's cluster half: the same contract."""
        sup = self.node.supervisor
        try:
            agent_id = sup.parse_id(req["agent"]).canonical
        except GolemError as err:
            done(None, err)
            return
        if agent_id in self.node.owned:
            self._local(agent_id, req, listener, done, forwarded)
            return
        if req.get("idempotency_key") is None:
            # fixed now: a retry after the owner's death must attach to the same invocation
            req = {**req, "idempotency_key": str(uuid.uuid4())}
        asyncio.ensure_future(self._route_invoke(agent_id, req, listener, done, forwarded))

    def _local(self, agent_id: str, req: dict[str, Any], listener: Listener, done: Done, forwarded: bool) -> None:
        def answered(reply: dict[str, Any] | None, err: GolemError | None) -> None:
            if err is not None and err.to_wire()["code"] in RETRIABLE:
                # a commit here was fenced off: this node was declared dead and must find out now
                self.node.check_lease_now()
                if not forwarded:
                    asyncio.ensure_future(self._route_invoke(agent_id, req, listener, done, forwarded))
                    return
            done(reply, err)

        self.node.supervisor.local_submit(req, listener, answered)

    async def _route_invoke(self, agent_id: str, req: dict[str, Any], listener: Listener, done: Done,
                            forwarded: bool) -> None:
        try:
            reply = await self._at_owner(agent_id, "invoke", req, listener, forwarded, create=True)
        except GolemError as err:
            done(None, err)
            return
        if reply is None:
            self._local(agent_id, req, listener, done, forwarded)
        elif "error" in reply:
            done(None, GolemError.from_wire(reply["error"]))
        else:
            done(reply, None)

    async def _at_owner(self, agent_id: str, op: str, fields: dict[str, Any],
                        events: Callable[[dict[str, Any]], None] | None, forwarded: bool,
                        create: bool) -> dict[str, Any] | None:
        """Send a request to the agent's owner and return its reply ({"error"}
        included, "id" removed), sending it again when the owner dies with it
        unanswered or answers NOT_OWNER; None when it is to be served here.
        NODE_UNREACHABLE after retry_for."""
        node = self.node
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        last = "no node could take it"
        while loop.time() < deadline:
            owner = None if agent_id in node.owned else await node.resolve(
                agent_id, may_forward=not forwarded, create=create)
            if owner is None:
                return None
            try:
                reply = await node.peer(owner.node, owner.address).request({"op": op, **fields}, events)
            except (PeerLost, OSError, TimeoutError) as exc:
                node.forget_owner(agent_id)
                last = f"node {owner.node} at {owner.address}: {exc}"
                await asyncio.sleep(node.lease_timeout / 5)
                continue
            reply.pop("id", None)
            err = reply.get("error")
            if err is not None and err.get("code") in RETRIABLE:
                node.forget_owner(agent_id)
                last = f"node {owner.node}: {err.get('message')}"
                await asyncio.sleep(0.05)
                continue
            return reply
        raise GolemError(Code.NODE_UNREACHABLE, f"{agent_id}'s owner could not be reached within "
                         f"{self.retry_for:g}s ({last}); an invocation it accepted stays journaled")

    # -- the other ops that name an agent ------------------------------------------------------

    async def run_op(self, op: str, req: dict[str, Any], emit: Callable[[dict[str, Any]], None],
                     local: Callable[[], Any], forwarded: bool) -> dict[str, Any]:
        """Any op but invoke, on a cluster node."""
        if op in AGENT_OPS or op == "promise_complete":
            return await self.run(op, req, emit, local, forwarded)
        if op == "list":
            return await self.list(req, local, forwarded)
        reply = dict(await local())
        if op == "status":
            reply["cluster"] = await self.node.status()
        return reply

    async def run(self, op: str, req: dict[str, Any], emit: Callable[[dict[str, Any]], None],
                  local: Callable[[], Any], forwarded: bool) -> dict[str, Any]:
        """An agent op (AGENT_OPS, promise_complete): `local()` runs its
        handler here; otherwise it is forwarded to the agent's owner."""
        node = self.node
        if op == "promise_complete":
            row = node.supervisor.store.get_promise(req["promise_id"])
            if row is None:
                return dict(await local())  # NOT_FOUND, as one node answers it
            agent_id = row["agent_id"]
        else:
            agent_id = node.supervisor.parse_id(req["agent"]).canonical
        reply = await self._at_owner(agent_id, op, req, emit, forwarded, create=op == "new")
        if reply is None:
            reply = dict(await local())
            if op == "get" and "agent" in reply:
                reply["agent"] = {**reply["agent"], "node": node.name}
            return reply
        if "error" in reply:
            raise GolemError.from_wire(reply["error"])
        return reply

    async def list(self, req: dict[str, Any], local: Callable[[], Any], forwarded: bool) -> dict[str, Any]:
        """Every node's agents, merged in agent-ID order, one page."""
        mine = dict(await local())
        if forwarded:
            return mine
        pages = [mine["agents"]]
        nexts = [mine.get("next")]
        for peer in await self.node.live_peers():
            try:
                reply = await peer.request({"op": "list", **req})
            except (PeerLost, OSError, TimeoutError) as exc:
                log.warning("list: node %s did not answer: %s", peer.node, exc)
                continue
            if "error" in reply:
                raise GolemError.from_wire(reply["error"])
            pages.append(reply["agents"])
            nexts.append(reply.get("next"))
        merged = sorted((a for page in pages for a in page), key=lambda a: a["agent_id"])
        limit = req.get("limit")
        more = any(n is not None for n in nexts)
        if limit is not None and len(merged) > limit:
            merged, more = merged[:limit], True
        return {"agents": merged, "next": merged[-1]["agent_id"] if more and merged else None}


__all__ = ["AGENT_OPS", "Router", "error_reply"]
