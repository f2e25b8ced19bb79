"""The blocking client of golemd: one connection, one request at a time.

golemctl uses it; so can scripts. For many requests in flight on one
connection use `golemctl.aio.AsyncClient` (also importable from here; it is
loaded on first use so that importing this module does not import asyncio).

    with Client.connect() as c:
        reply = c.invoke('CounterAgent("c1")', "increment")
        reply["result"], reply["idempotency_key"]
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from golemctl import ops
from golemctl.ops import CONNECT_TIMEOUT, REPLY_TIMEOUT, Call
from golemctl.paths import default_socket_path
from golemctl.unreachable import connection_lost, explain_connect_error, path_too_long, unreachable
from golemd.wire.codec import make_unpacker

if TYPE_CHECKING:
    from datetime import datetime

    from golemctl.aio import AsyncClient
    from golemd.model.agent_id import AgentId

__all__ = ["AsyncClient", "Client", "CONNECT_TIMEOUT", "REPLY_TIMEOUT", "default_socket_path"]

EventCallback = Callable[[dict[str, Any]], object]
# `list` is also a method name in the client classes, where it would shadow the builtin.
_Maps = list[dict[str, Any]]
_RECV_BYTES = 64 * 1024  # 128 KiB or more is an mmap per read in glibc: 12 us each
# A daemon that stops reading must not hang us inside sendall.
_SEND_TIMEOUT = REPLY_TIMEOUT


def __getattr__(name: str) -> Any:
    if name == "AsyncClient":
        from golemctl.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'golemctl.client' has no attribute {name!r}")


def open_unix_socket(path: str, timeout: float = CONNECT_TIMEOUT) -> Any:
    """Connect to `path`, or raise GolemError(DAEMON_UNREACHABLE) saying why not.

    The socket is `_socket.socket`, the C type under socket.socket, with every
    method the client uses: `import socket` costs golemctl 2.5 ms (its enums),
    a tenth of its own start-up."""
    import _socket

    too_long = path_too_long(path)
    if too_long:
        raise too_long
    deadline = time.monotonic() + timeout
    while True:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(path)
            return sock
        except OSError as e:
            sock.close()
            # A Unix socket with a full accept backlog fails a timed (that is,
            # non-blocking) connect with EAGAIN instead of waiting: retry.
            if e.errno == errno.EAGAIN and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            raise explain_connect_error(path, e, timeout) from None


class Client:
    """A blocking connection to golemd. Not thread-safe: one request at a time.

    Every method raises GolemError: the daemon's refusal (its code and
    message), DAEMON_UNREACHABLE when the connection fails or a reply does not
    come within its timeout, PROTOCOL_ERROR when the reply is garbage. After
    any failure other than the daemon's own error reply the connection is
    closed (its stream position is unknown); connect again.
    """

    def __init__(self, sock: Any, path: str):
        self.path = path
        self._sock: Any = sock  # a socket.socket or a _socket.socket
        self._unpacker = make_unpacker(strict_map_key=False)  # results may have int keys
        self._next_id = 0

    @classmethod
    def connect(cls, path: str | os.PathLike[str] | None = None,
                timeout: float = CONNECT_TIMEOUT) -> Client:
        """Connect to `path` (default: default_socket_path())."""
        p = os.fspath(path) if path else default_socket_path()
        return cls(open_unix_socket(p, timeout), p)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- raw requests -----------------------------------------------------

    def request(self, op: str, /, *, on_event: EventCallback | None = None,
                reply_timeout: float | None | EllipsisType = ...,
                **fields: Any) -> dict[str, Any]:
        """Send one request and return its success fields (without `id`).

        on_event: called with each event map the op sends before its reply.
        reply_timeout: seconds to wait for a message of this request; `...`
        means the op's default (none for an awaited invoke or a followed
        stream, else 60 s); None waits for ever.
        """
        return self._exchange(op, fields, on_event, reply_timeout)

    def call(self, c: Call, on_event: EventCallback | None = None,
             reply_timeout: float | None | EllipsisType = ...) -> Any:
        return ops.unwrap(c, self._exchange(c.op, c.fields, on_event, reply_timeout))

    def _map(self, c: Call, on_event: EventCallback | None = None,
             reply_timeout: float | None | EllipsisType = ...) -> dict[str, Any]:
        return ops.as_map(c, self.call(c, on_event, reply_timeout))

    def _maps(self, c: Call) -> _Maps:
        return ops.as_maps(c, self.call(c))

    def _exchange(self, op: str, fields: dict[str, Any], on_event: EventCallback | None,
                  reply_timeout: float | None | EllipsisType) -> dict[str, Any]:
        if self._sock is None:
            raise unreachable(f"the connection to golemd at {self.path} is closed")
        if reply_timeout is ...:
            reply_timeout = ops.default_reply_timeout(op, fields)
        self._next_id += 1
        rid = self._next_id
        data = ops.encode_request(op, rid, fields)
        try:
            self._send(data)
            while True:
                msg = self._next_message(reply_timeout)
                mid = msg.get("id")
                # nil: the daemon could not read our request (PROTOCOL_ERROR,
                # TOO_LARGE); with one request in flight it is ours.
                if mid is not None and mid != rid:
                    raise ops.protocol_error(f"golemd answered request {mid!r} while {rid} was the only one sent")
                if ops.is_event(msg):
                    if on_event is not None and isinstance(msg["event"], dict):
                        on_event(msg["event"])
                    continue
                break
        except BaseException:
            # Mid-exchange failure (timeout, Ctrl-C, garbage): the stream
            # position is lost, so the connection cannot be reused.
            self.close()
            raise
        return ops.final_reply(msg)

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.settimeout(_SEND_TIMEOUT)
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise unreachable(f"golemd at {self.path} stopped reading requests "
                              f"(nothing sent for {_SEND_TIMEOUT:g} s)") from None
        except OSError as e:
            raise connection_lost(self.path, e) from None

    def _next_message(self, idle_timeout: float | None) -> dict[str, Any]:
        assert self._sock is not None
        while True:
            try:
                msg = next(self._unpacker)
            except StopIteration:
                pass
            except Exception as e:  # msgpack's FormatError, StackError, ExtraData...
                raise ops.protocol_error(f"golemd sent bytes that are not a valid message: {e}") from None
            else:
                return ops.check_message(msg)
            self._sock.settimeout(idle_timeout)
            try:
                data = self._sock.recv(_RECV_BYTES)
            except TimeoutError:
                raise unreachable(f"no reply from golemd at {self.path} within "
                                  f"{idle_timeout:g} s") from None
            except OSError as e:
                raise connection_lost(self.path, e) from None
            if not data:
                raise unreachable(f"golemd at {self.path} closed the connection before "
                                  "answering (did it stop or crash?)")
            try:
                self._unpacker.feed(data)
            except Exception as e:  # BufferFull: a message over the size limit
                raise ops.protocol_error(f"golemd sent an oversized message: {e}") from None

    # --- convenience ops (docs/protocol.md) -----------------------------

    def invoke(self, agent: str | AgentId, method: str, args: Sequence[Any] = (),
               idempotency_key: str | None = None, mode: str = "await",
               schedule_at: float | datetime | None = None, timeout: float | None = None,
               stream: bool = False, on_event: EventCallback | None = None,
               reply_timeout: float | None | EllipsisType = ...) -> dict[str, Any]:
        """Invoke a method. Returns {"idempotency_key", "result"} (await) or
        {"idempotency_key", "status", ...} (trigger). `timeout` bounds the
        invocation's run time in golemd, not the wait for it; with stream=True
        the agent's output arrives in on_event as {"type": "output", ...}."""
        c = ops.invoke(agent, method, args, idempotency_key, mode, schedule_at, timeout, stream)
        return self._map(c, on_event, reply_timeout)

    def get(self, agent: str | AgentId) -> dict[str, Any]:
        """The agent's metadata; AGENT_NOT_FOUND if it was never invoked."""
        return self._map(ops.agent_op("get", agent))

    def list(self, env: str | None = None, type: str | None = None,
             status: str | None = None) -> _Maps:
        """Metadata of every agent matching the filters, ordered by ID (fetched a page at a time)."""
        out: _Maps = []
        after = None
        while True:
            page = self.call(ops.list_agents(env, type, status, after))
            out += page["agents"]
            after = page.get("next")
            if after is None:
                return out

    def cancel(self, agent: str | AgentId, idempotency_key: str) -> dict[str, Any]:
        """Cancel a pending invocation: {"idempotency_key", "canceled": True}."""
        return self._map(ops.cancel(agent, idempotency_key))

    def interrupt(self, agent: str | AgentId, recover: bool = False) -> dict[str, Any]:
        return self._map(ops.agent_op("interrupt", agent, recover=recover))

    def resume(self, agent: str | AgentId) -> dict[str, Any]:
        return self._map(ops.agent_op("resume", agent))

    def simulate_crash(self, agent: str | AgentId) -> dict[str, Any]:
        return self._map(ops.agent_op("simulate_crash", agent))

    def delete(self, agent: str | AgentId) -> dict[str, Any]:
        """Delete the agent; returns its last metadata."""
        return self._map(ops.agent_op("delete", agent))

    def invocations(self, agent: str | AgentId) -> _Maps:
        """The running invocation, then the pending queue, then scheduled ones."""
        return self._maps(ops.invocations(agent))

    def oplog(self, agent: str | AgentId, last: int | None = None) -> _Maps:
        return self._maps(ops.oplog(agent, last))

    def stream(self, agent: str | AgentId, on_event: EventCallback | None,
               follow: bool = False, last: int | None = None) -> dict[str, Any]:
        """Pass the agent's buffered (and with follow, future) output lines to
        on_event; returns {"ended": "done" | "deleted" | "shutdown"}."""
        return self._map(ops.stream(agent, follow, last), on_event)

    def types(self) -> _Maps:
        return self._maps(ops.plain("types", "types"))

    def status(self) -> dict[str, Any]:
        return self._map(ops.plain("status"))

    def reload(self) -> dict[str, Any]:
        return self._map(ops.plain("reload"))

    def stop(self) -> dict[str, Any]:
        return self._map(ops.plain("stop"))
