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
from collections.abc import Callable, Generator
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from golemctl import ops
from golemctl.ops import CONNECT_TIMEOUT, REPLY_TIMEOUT, Call, install_ops
from golemctl.paths import default_socket_path
from golemctl.unreachable import connection_lost, explain_connect_error, path_too_long, unreachable
from golemd.model.errors import GolemError
from golemd.wire.codec import make_unpacker

if TYPE_CHECKING:
    from golemctl.aio import AsyncClient

__all__ = ["AsyncClient", "Client", "CONNECT_TIMEOUT", "REPLY_TIMEOUT", "default_socket_path"]

EventCallback = Callable[[dict[str, Any]], object]
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

    Besides request() and call(), it has one method per op of
    docs/protocol.md, of the same name (invoke, get, list, cancel, ...),
    defined with the op in golemd/wire/ops/.
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
        """Send `c` (golemd.wire.ops.Call); the reply field it names, of its shape."""
        return ops.unwrap(c, self._exchange(c.op, c.fields, on_event, reply_timeout))

    def run(self, steps: Generator[Call, Any, Any]) -> Any:
        """Send each Call `steps` yields, and send it back the reply (as call()
        returns it), until it returns: its value. For ops such as `list`
        whose one method makes several requests."""
        c = next(steps)
        while True:
            reply = self.call(c)
            try:
                c = steps.send(reply)
            except StopIteration as done:
                return done.value

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
            raise self._last_word() or connection_lost(self.path, e) from None

    def _last_word(self) -> GolemError | None:
        """The error the daemon wrote before it hung up on our request
        (UNAUTHORIZED comes with the connection, before any request is read)."""
        try:
            self._sock.settimeout(0.5)
            data = self._sock.recv(_RECV_BYTES)
            self._unpacker.feed(data)
            msg = next(self._unpacker, None)
        except Exception:
            return None
        return ops.reply_error(msg) if isinstance(msg, dict) else None

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

    # --- convenience ops ---------------------------------------------------
    # One method per op of docs/protocol.md (invoke, get, list, cancel, ...):
    # the `client` function of golemd/wire/ops/NAME.py, set by install_ops
    # below, so that an op and its method are defined in one place.

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any: ...  # the op methods, to a type checker


install_ops(Client)
