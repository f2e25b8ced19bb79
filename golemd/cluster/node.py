"""This node's life in the cluster.

- start: register (a new epoch), serve peers on node_listen, renew the
  lease every lease_timeout / 4, and every lease_timeout / 2 declare
  expired nodes dead and take the agents with unfinished work that nobody
  owns (a dead node's, or this node's own from before a restart).
- resolve(agent): this node (None: serve it here; the agent is taken and
  loaded from the store first when no node owns it), or its live owner.
- A renewal that finds this node declared dead (it was paused or cut off
  past its lease) drops every agent at once (their workers killed, their
  callers told NOT_OWNER, so that they ask the new owner) and registers
  again. Until then its commits fail at the store's fence.
- stop: leave, so that other nodes take its agents without waiting.

Statements run on one thread of their own (ClusterDB's connection), so the
event loop never waits on PostgreSQL for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from golemd.cluster.db import ClusterDB, Owner
from golemd.cluster.notify import PromiseListener, recheck_waiters, wake_waiters
from golemd.cluster.peer import PeerClient, PeerConnection
from golemd.model.errors import Code, GolemError

if TYPE_CHECKING:
    from golemd.driver.supervisor import Supervisor
    from golemd.server.context import ServerContext

log = logging.getLogger("golemd.cluster")
T = TypeVar("T")
MAX_KNOWN_OWNERS = 100_000


def read_secret(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise GolemError(Code.USAGE, f"cluster_secret_file {path}: {exc.strerror}") from None
    if len(secret) < 16:
        raise GolemError(Code.USAGE, f"cluster_secret_file {path} holds fewer than 16 bytes: "
                         "use e.g. `head -c 32 /dev/urandom | base64 > FILE`")
    if os.stat(path).st_mode & 0o077:
        log.warning("cluster_secret_file %s is readable by others than its owner (chmod 600 it)", path)
    return secret


class Node:
    def __init__(self, daemon: ServerContext, url: str, name: str, listen: str, secret: bytes,
                 lease_timeout: float) -> None:
        self.daemon = daemon
        self.url = url
        self.name = name
        self.listen = listen
        self.secret = secret
        self.lease_timeout = lease_timeout
        self.epoch = 0
        self.owned: dict[str, int] = {}  # agent ID -> fencing token
        self._peers: dict[str, PeerClient] = {}
        self._claiming: dict[str, asyncio.Future[None]] = {}
        self._owners: dict[str, Owner] = {}  # agents owned elsewhere, as last seen
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="golemd-cluster")
        self.db: ClusterDB | None = None
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.last_renewal = 0.0
        self.on_epoch: Callable[[int], None] | None = None  # the store's fence follows it
        self._listener: PromiseListener | None = None
        self._check = asyncio.Event()  # check_lease_now

    @property
    def supervisor(self) -> Supervisor:
        return self.daemon.supervisor

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, self._retried, fn, args)

    def _retried(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """On the database thread: once more on a new connection if PostgreSQL went away."""
        import psycopg

        try:
            return fn(*args)
        except psycopg.OperationalError:
            if self.db is None or not self.db.conn.closed and not self.db.conn.broken:
                raise
            self.db.reconnect()
            return fn(*args)

    # -- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.db = await self.call(ClusterDB, self.url)
        host, _, port = self.listen.rpartition(":")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: PeerConnection(self.daemon, self.name, self.secret),
                                                host.strip("[]"), int(port), reuse_address=True)
        await self._register()
        sup = self.supervisor
        self._listener = PromiseListener(self.url, loop, lambda pid: wake_waiters(sup.durable, sup.store, pid),
                                         lambda: recheck_waiters(sup.durable, sup.store))
        self._listener.start()
        self._tasks = [asyncio.create_task(self._renewals()), asyncio.create_task(self._failovers())]
        log.info("node %s (epoch %d) serving peers on %s", self.name, self.epoch, self.listen)

    async def _register(self) -> None:
        assert self.db is not None
        started = time.monotonic()
        self.epoch = await self.call(self.db.register, self.name, self.listen, self.lease_timeout)
        self.last_renewal = started
        if self.on_epoch is not None:
            self.on_epoch(self.epoch)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._listener is not None:
            self._listener.stop()
        if self._server is not None:
            self._server.close()
        for peer in self._peers.values():
            peer.close()
        if self.db is not None:
            try:
                await self.call(self.db.leave, self.name, self.epoch)
            except Exception as exc:  # the database is gone: the lease runs out by itself
                log.warning("could not leave the cluster cleanly: %s", exc)
            await self.call(self.db.close)
        self._db_thread.shutdown(wait=False)

    async def _renewals(self) -> None:
        while True:
            self._check.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check.wait(), self.lease_timeout / 4)
            await self._renew()

    def check_lease_now(self) -> None:
        """A commit was fenced off: renew now rather than at the next turn,
        so that a node declared dead drops its agents at once."""
        self._check.set()

    async def _renew(self) -> None:
        assert self.db is not None
        began = time.monotonic()
        try:
            alive = await self.call(self.db.renew, self.name, self.epoch, self.lease_timeout)
        except Exception as exc:
            log.warning("lease renewal failed: %s", exc)
            if time.monotonic() - self.last_renewal > self.lease_timeout:
                self.drop_all("this node could not renew its lease with PostgreSQL")
            return
        if alive:
            self.last_renewal = began
            return
        self.drop_all("another node declared this one dead (paused or cut off past its lease)")
        await self._register()

    def drop_all(self, why: str) -> None:
        if not self.owned:
            return
        log.error("dropping %d agents: %s", len(self.owned), why)
        for agent_id in list(self.owned):
            self.drop(agent_id)

    def drop(self, agent_id: str) -> None:
        self.owned.pop(agent_id, None)
        self.supervisor.forget(agent_id, not_owner(agent_id, self.name))

    async def _failovers(self) -> None:
        assert self.db is not None
        while True:
            await asyncio.sleep(self.lease_timeout / 2 * random.uniform(0.8, 1.2))
            try:
                for node, epoch in await self.call(self.db.expired_nodes, self.name):
                    if await self.call(self.db.mark_dead, node, epoch):
                        log.warning("node %s missed its lease: declared dead; its agents move", node)
                for agent_id in await self.call(self.db.orphans):
                    if agent_id not in self.owned:
                        await self.take(agent_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("failover scan failed: %s", exc)

    # -- owners ---------------------------------------------------------------------------

    async def resolve(self, agent_id: str, may_forward: bool = True, create: bool = True) -> Owner | None:
        """None: serve it here (taken and loaded now if nobody owned it); else its live owner.
        Owners elsewhere are remembered until a request to one fails (forget_owner).
        Without `create`, an agent nobody owns that the store does not hold is
        not taken: served here, its op answers AGENT_NOT_FOUND, and no lease is made."""
        assert self.db is not None
        known = self._owners.get(agent_id)
        if known is not None and may_forward:
            return known
        for _ in range(20):
            if agent_id in self.owned:
                return None
            owner = await self.call(self.db.owner, agent_id)
            if owner is not None and owner.alive and owner.node != self.name:
                if not may_forward:
                    raise not_owner(agent_id, self.name)
                if len(self._owners) >= MAX_KNOWN_OWNERS:
                    self._owners.clear()
                self._owners[agent_id] = owner
                return owner
            if owner is not None and owner.current and owner.node == self.name and owner.epoch == self.epoch:
                self.supervisor.adopt(agent_id)  # ours, but not loaded (a load that failed)
                self.owned[agent_id] = owner.token
                return None
            if owner is not None and owner.current and not owner.alive and owner.node != self.name:
                await self.call(self.db.mark_dead, owner.node, owner.epoch)
            if owner is None and not create and self.supervisor.store.load_one(agent_id).row is None:
                return None
            if await self.take(agent_id):
                return None
            await asyncio.sleep(0.01)
        raise GolemError(Code.NODE_UNREACHABLE, f"no node could take {agent_id}")

    def forget_owner(self, agent_id: str) -> None:
        """A request to its remembered owner failed: look it up again next time."""
        self._owners.pop(agent_id, None)

    async def take(self, agent_id: str) -> bool:
        """Own `agent_id` and load it from the store; False if another node got it."""
        assert self.db is not None
        pending = self._claiming.get(agent_id)
        if pending is not None:
            await pending
            return agent_id in self.owned
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._claiming[agent_id] = fut
        try:
            token = await self.call(self.db.claim, agent_id, self.name, self.epoch)
            if token is None:
                return False
            self.supervisor.adopt(agent_id)
            self.owned[agent_id] = token
            return True
        finally:
            del self._claiming[agent_id]
            fut.set_result(None)

    def peer(self, node: str, address: str) -> PeerClient:
        peer = self._peers.get(node)
        if peer is None or peer.address != address:
            if peer is not None:
                peer.close()
            peer = self._peers[node] = PeerClient(self.name, address, self.secret)
        return peer

    async def live_peers(self) -> list[PeerClient]:
        assert self.db is not None
        rows = await self.call(self.db.nodes)
        return [self.peer(r["node"], r["address"]) for r in rows if r["alive"] and r["node"] != self.name]

    async def status(self) -> dict[str, Any]:
        assert self.db is not None
        return {"node": self.name, "epoch": self.epoch, "owned": len(self.owned),
                "lease_timeout": self.lease_timeout,
                "since_renewal": time.monotonic() - self.last_renewal,
                "nodes": await self.call(self.db.nodes)}


def not_owner(agent_id: str, node: str) -> GolemError:
    return GolemError(Code.NOT_OWNER, f"node {node} does not own {agent_id} any more; ask again")

