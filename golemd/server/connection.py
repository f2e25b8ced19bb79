"""The Unix socket: accept connections, decode requests, run handlers, write replies.

Each op's request shape and handler are defined in golemd/wire/ops/; this
module dispatches through its registry.

An invoke is handled by callbacks, with no task of its own: the supervisor
tells the connection its answer, from inside the commit that makes it
durable. Every other request runs in its own task. Either way one connection
pipelines many requests and a reply for an idle agent overtakes one for a
busy agent. A connection's tasks end with it, but an awaited invocation does
not: it runs on and its outcome stays retrievable by its idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import msgpack

from golemd.model.errors import Code, GolemError
from golemd.perf import cork
from golemd.server.access import peer_credentials, refusal
from golemd.server.context import OpContext, serve_op
from golemd.wire.codec import MAX_MESSAGE_BYTES, error_reply, make_unpacker, pack, small_reads
from golemd.wire.ops.registry import MUTATING, validate_request
from golemd.wire.oversize import HeaderScan

if TYPE_CHECKING:
    from golemd.server.context import ServerContext as Daemon

log = logging.getLogger("golemd.server")

class Connection(asyncio.Protocol):
    """One client. A Protocol rather than a stream reader: requests are
    dispatched from data_received, each in its own task, so one connection
    pipelines and replies overtake each other."""

    forwarded = False  # a request from another node of the cluster (golemd.cluster.peer)

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self._max_buffer = daemon.config.max_client_buffer
        self._debug = log.isEnabledFor(logging.DEBUG)  # asked once: invoke logs at debug
        self.ops = OpContext(daemon)  # what the handlers are given
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.invoking = 0  # invokes not yet answered (they have no task)
        self.closed = False
        self.peer: tuple[int, int, int] | None = None
        self.who = "unknown peer"
        # Arguments may be any msgpack value, maps with int keys included; the
        # request's own keys are checked to be strings by validate_request.
        self.unpacker = make_unpacker(MAX_MESSAGE_BYTES, strict_map_key=False)
        self.fed = 0
        self.done = 0  # bytes of complete requests (msgpack's tell() counts a partial one too)
        self.last_read = 0.0
        self._partial: HeaderScan | None = None  # the headers of a request arrived in part
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._corked = False  # waiting in golemd.perf.cork for its flush

    # -- lifecycle -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        small_reads(transport)
        self.peer = peer_credentials(transport.get_extra_info("socket"))
        self.who = f"pid {self.peer[0]} uid {self.peer[1]}" if self.peer else "unknown peer"
        self.daemon.connections.add(self)
        if not self.daemon.access.allows(self.peer):
            log.warning("refused a connection from %s: not allowed (allow_uids, allow_groups, "
                        "socket_group allow users)", self.who)
            self.send(error_reply(None, GolemError(Code.UNAUTHORIZED, refusal(self.peer))))
            self.close()
            return
        self.last_read = asyncio.get_running_loop().time()
        self._arm_timer(self.daemon.config.client_idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.daemon.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        # The requests end with the connection; an awaited invocation does not.
        for task in list(self.tasks):
            task.cancel()

    def close(self) -> None:
        """Hang up once what was written has been sent."""
        self.closed = True
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def _arm_timer(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + delay, self._check_idle)

    def _check_idle(self) -> None:
        """Close a connection that went silent: idle with nothing in flight, or
        stuck in the middle of a request. One timer per connection, re-armed
        for the next deadline, so a busy connection costs nothing."""
        config = self.daemon.config
        partial = self.fed > self.done
        limit = config.client_read_timeout if partial else config.client_idle_timeout
        if (self.tasks or self.invoking) and not partial:
            self._arm_timer(limit)
            return
        left = self.last_read + limit - asyncio.get_running_loop().time()
        if left > 0:
            self._arm_timer(left)
            return
        log.info("closing a silent connection (%s): %s", self.who,
                 "a request arrived only in part" if partial else "idle")
        self.close()

    # -- reading ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_read = asyncio.get_running_loop().time()
        self.fed += len(data)
        try:
            self.unpacker.feed(data)
        except msgpack.BufferFull:
            self.send(error_reply(None, GolemError(
                Code.TOO_LARGE, f"a message is larger than {MAX_MESSAGE_BYTES} bytes")))
            self.close()
            return
        store = self.daemon.supervisor.store
        # The enqueues of every request in this read share one commit, and
        # their answers one write.
        cork.hold()
        store.hold()
        try:
            for msg in self.unpacker:
                self.done = self.unpacker.tell()
                self.dispatch(msg)
        except Exception as exc:  # any undecodable input: answer once, then hang up
            self.send(error_reply(None, GolemError(Code.PROTOCOL_ERROR, f"undecodable msgpack: {exc}")))
            self.close()
            return
        finally:
            store.release()
            cork.release()
        if self.fed > self.done:
            refused = self._scan(data)
            if refused is not None:
                # It could never be accepted: say so now, not after the read timeout.
                log.info("closing a connection (%s): %s", self.who, refused)
                self.send(error_reply(None, refused))
                self.close()
                return
            if self._timer is not None:
                # Part of a request: it must come whole within the read timeout.
                limit = self.daemon.config.client_read_timeout
                if self._timer.when() > self.last_read + limit:
                    self._timer.cancel()
                    self._arm_timer(limit)
        elif self._partial is not None:
            self._partial = None

    def _scan(self, data: bytes) -> GolemError | None:
        """Read the headers of the request that has arrived in part (it
        starts at offset `done`): the error it must get now, if its headers show one."""
        scan = self._partial
        if scan is not None and scan.start == self.done:
            return scan.feed(data)  # the same request, going on
        tail = self.fed - self.done
        if tail > len(data):
            return None  # begun in a read not scanned (cannot happen: every partial one is)
        self._partial = HeaderScan(MAX_MESSAGE_BYTES, self.done)
        return self._partial.feed(memoryview(data)[len(data) - tail:])

    def eof_received(self) -> bool:
        return False  # the client is done sending: close our side too

    def dispatch(self, msg: Any) -> None:
        try:
            rid, op, req = validate_request(msg)
        except GolemError as err:
            self.send(error_reply(getattr(err, "request_id", None), err))
            return
        if op == "invoke":
            self.invoke(rid, req)
            return
        task = asyncio.create_task(self.run(rid, op, req))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def invoke(self, rid: int | None, req: dict[str, Any]) -> None:
        if self._debug:
            log.debug("invoke %s by %s", req.get("agent", ""), self.who)
        listener = None
        if req.get("stream") and req.get("mode", "await") == "await":
            def listener(event: dict[str, Any]) -> None:
                self.send({"id": rid, "event": event})

        answered = False

        def done(reply: dict[str, Any] | None, err: GolemError | None) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            self.invoking -= 1
            if err is not None:
                self.send(error_reply(rid, err))
            else:
                reply["id"] = rid  # type: ignore[index]
                self.send(reply)  # type: ignore[arg-type]

        self.invoking += 1
        try:
            sup = self.daemon.supervisor
            if self.forwarded and sup.router is not None:
                sup.router.submit(req, listener, done, forwarded=True)  # served here, not sent on
            else:
                sup.submit(req, listener, done)
        except Exception as exc:
            log.exception("invoke failed")
            done(None, GolemError(Code.INTERNAL, f"golemd failed: {exc!r}"))

    async def run(self, rid: int | None, op: str, req: dict[str, Any]) -> None:
        if op in MUTATING:
            # Who changed what: operators ask this after the fact.
            log.log(logging.DEBUG if op == "invoke" else logging.INFO, "%s %s by %s",
                    op, req.get("agent") or req.get("promise_id", ""), self.who)

        def emit(event: dict[str, Any]) -> None:
            self.send({"id": rid, "event": event})

        try:
            reply = await serve_op(self.daemon, self.ops, op, req, emit, self.forwarded)
            self.send({"id": rid, **reply})
        except GolemError as err:
            self.send(error_reply(rid, err))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("op %s failed", op)
            self.send(error_reply(rid, GolemError(Code.INTERNAL, f"golemd failed: {exc!r}")))

    # -- writing ---------------------------------------------------------

    def send(self, obj: dict[str, Any]) -> None:
        """Write a reply: at once, or, while corked, with the others of the burst."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            data = pack(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            data = pack(error_reply(obj.get("id"), GolemError(Code.INTERNAL, f"reply cannot be encoded: {exc}")))
        if cork.held():
            # Written, and its buffer checked, by flush() at the end of the burst.
            self._out.append(data)
            self._out_bytes += len(data)
            if not self._corked:
                self._corked = True
                cork.later(self)
            if self._out_bytes > self._max_buffer:
                self._drop_slow_reader(transport)
            return
        transport.write(data)
        self._check_buffer(transport)

    def _check_buffer(self, transport: asyncio.Transport) -> None:
        if transport.get_write_buffer_size() > self._max_buffer:
            self._drop_slow_reader(transport)

    def _drop_slow_reader(self, transport: asyncio.Transport) -> None:
        # A client that does not read its replies must not grow our memory.
        log.warning("dropping a client that does not read its replies (%s)", self.who)
        self._out.clear()
        self._out_bytes = 0
        transport.abort()
        self.closed = True

    def flush(self) -> None:
        self._corked = False
        transport = self.transport
        out, self._out, self._out_bytes = self._out, [], 0
        if out and transport is not None and not transport.is_closing():
            transport.write(b"".join(out) if len(out) > 1 else out[0])
            self._check_buffer(transport)
