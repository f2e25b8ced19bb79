"""Nodes talking to each other over TCP: golemd's client protocol, after a
handshake in which each side proves it holds the cluster secret (an HMAC of
the other side's fresh nonce), so that neither a stranger nor a replay can
pass for a node.

1. server -> client: {"golemd_peer": 1, "node": NAME, "nonce": 32 bytes}
2. client -> server: {"node": NAME, "nonce": 32 bytes,
                      "proof": HMAC(secret, "client" + server nonce + client name)}
3. server -> client: {"proof": HMAC(secret, "server" + client nonce + server name)}
   or it hangs up.

Then the client sends requests as golemctl does and reads replies and events
by id. A request that reaches a node over a peer connection is served there
(golemd.cluster.router: never forwarded again).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from golemd.model.errors import Code, GolemError
from golemd.server.connection import Connection
from golemd.wire.codec import make_unpacker, pack

if TYPE_CHECKING:
    from golemd.server.context import ServerContext

log = logging.getLogger("golemd.cluster")

HANDSHAKE_TIMEOUT = 5.0
HELLO_MAX = 4096
READ_BYTES = 64 * 1024  # as the client connections read (golemd.wire.codec.small_reads)


def proof(secret: bytes, role: bytes, nonce: bytes, name: str) -> bytes:
    return hmac.new(secret, role + nonce + name.encode(), hashlib.sha256).digest()


class PeerConnection(Connection):
    """A node's connection to this one: the handshake, then a Connection
    whose requests are served here."""

    forwarded = True

    def __init__(self, daemon: ServerContext, node: str, secret: bytes) -> None:
        super().__init__(daemon)
        self.node_name = node
        self.secret = secret
        self.nonce = secrets.token_bytes(32)
        self.authenticated = False
        self._hello = make_unpacker(HELLO_MAX)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.who = f"peer {transport.get_extra_info('peername')}"
        transport.write(pack({"golemd_peer": 1, "node": self.node_name, "nonce": self.nonce}))  # type: ignore[attr-defined]
        self._deadline = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._too_slow)

    def _too_slow(self) -> None:
        if not self.authenticated and self.transport is not None:
            log.warning("closing %s: no handshake within %gs", self.who, HANDSHAKE_TIMEOUT)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self.authenticated:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.authenticated:
            super().data_received(data)
            return
        try:
            self._hello.feed(data)
            hello = next(self._hello, None)
        except (msgpack.BufferFull, ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            hello = {}
        if hello is None:
            return  # more to come
        rest = self._hello.read_bytes(HELLO_MAX)  # requests sent right after the handshake
        if not (isinstance(hello, dict) and isinstance(hello.get("node"), str)
                and isinstance(hello.get("nonce"), bytes) and isinstance(hello.get("proof"), bytes)
                and hmac.compare_digest(hello["proof"], proof(self.secret, b"client", self.nonce, hello["node"]))):
            log.warning("refused %s: wrong cluster secret or a malformed handshake", self.who)
            assert self.transport is not None
            self.transport.close()
            return
        self.authenticated = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.who = f"node {hello['node']}"
        assert self.transport is not None
        self.transport.write(pack({"proof": proof(self.secret, b"server", hello["nonce"], self.node_name)}))
        self.daemon.connections.add(self)
        self.last_read = asyncio.get_running_loop().time()
        self._arm_timer(self.daemon.config.client_idle_timeout)
        if rest:
            super().data_received(rest)


class PeerLost(Exception):
    """The connection to the peer went away with the request unanswered."""


class PeerClient:
    """One connection to another node, many requests in flight on it."""

    def __init__(self, me: str, address: str, secret: bytes) -> None:
        self.me = me
        self.address = address
        self.secret = secret
        self.node: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, tuple[asyncio.Future[dict[str, Any]], Callable[[dict[str, Any]], None] | None]] = {}
        self._next_id = 0
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._out: list[bytes] = []

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def _connect(self) -> None:
        async with self._connecting:
            if self.connected:
                return
            host, _, port = self.address.rpartition(":")
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port), limit=1 << 20), HANDSHAKE_TIMEOUT)
            try:
                unpacker = make_unpacker(HELLO_MAX)
                hello = await asyncio.wait_for(_read_one(reader, unpacker), HANDSHAKE_TIMEOUT)
                nonce = secrets.token_bytes(32)
                writer.write(pack({"node": self.me, "nonce": nonce,
                                   "proof": proof(self.secret, b"client", hello["nonce"], self.me)}))
                answer = await asyncio.wait_for(_read_one(reader, unpacker), HANDSHAKE_TIMEOUT)
                if not hmac.compare_digest(answer.get("proof", b""), proof(self.secret, b"server", nonce,
                                                                            hello["node"])):
                    raise GolemError(Code.UNAUTHORIZED, f"node at {self.address} does not hold the cluster secret")
            except BaseException:
                writer.close()
                raise
            self.node = hello["node"]
            self._reader, self._writer = reader, writer
            self._task = asyncio.create_task(self._read(reader, make_unpacker(strict_map_key=False)))

    async def _read(self, reader: asyncio.StreamReader, unpacker: msgpack.Unpacker) -> None:
        try:
            while True:
                for msg in unpacker:
                    entry = self._pending.get(msg.get("id"))
                    if entry is None:
                        continue
                    fut, on_event = entry
                    if "event" in msg:
                        if on_event is not None:
                            on_event(msg["event"])
                    elif not fut.done():
                        fut.set_result(msg)
                data = await reader.read(READ_BYTES)
                if not data:
                    break
                unpacker.feed(data)
        except (OSError, ValueError, msgpack.UnpackException):
            pass
        finally:
            self._lost()

    def _lost(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = self._reader = None
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(PeerLost(f"the connection to {self.address} was lost"))

    async def request(self, fields: dict[str, Any],
                      on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Send one request (without "v"/"id": they are set here); its reply
        map ({"error": ...} included). Raises PeerLost or OSError."""
        if not self.connected:
            await self._connect()
        assert self._writer is not None
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (fut, on_event)
        try:
            self._out.append(pack({**fields, "v": 1, "id": rid}))
            if len(self._out) == 1:
                # the requests of this loop round leave in one write
                asyncio.get_running_loop().call_soon(self._flush)
            return await fut
        finally:
            self._pending.pop(rid, None)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(out))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._lost()


async def _read_one(reader: asyncio.StreamReader, unpacker: msgpack.Unpacker) -> dict[str, Any]:
    while True:
        for msg in unpacker:
            if not isinstance(msg, dict):
                raise GolemError(Code.PROTOCOL_ERROR, "a peer sent something other than a map")
            return msg
        data = await reader.read(HELLO_MAX)
        if not data:
            raise PeerLost("the peer hung up during the handshake")
        unpacker.feed(data)
