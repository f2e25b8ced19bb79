"""The asyncio client of golemd: many requests in flight on one connection.

Requests are pipelined: each gets its own id, one reader task matches replies
to requests by id (they may arrive out of order: an idle agent answers before
a busy one) and routes events to the callback of their request.

    async with await AsyncClient.connect() as c:
        a, b = await asyncio.gather(c.invoke(x, "slow"), c.invoke(y, "fast"))
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import Callable, Generator
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from golemctl import ops
from golemctl.ops import CONNECT_TIMEOUT, Call, install_ops
from golemctl.paths import default_socket_path
from golemctl.unreachable import connection_lost, explain_connect_error, path_too_long, unreachable
from golemd.model.errors import GolemError
from golemd.wire.codec import make_unpacker, small_reads

EventCallback = Callable[[dict[str, Any]], object]
_RECV_BYTES = 64 * 1024  # 128 KiB or more is an mmap per read in glibc: 12 us each


class _Pending:
    __slots__ = ("future", "on_event", "last_activity")

    def __init__(self, future: asyncio.Future[dict[str, Any]], on_event: EventCallback | None,
                 now: float):
        self.future = future
        self.on_event = on_event
        self.last_activity = now


async def _connect_unix(path: str) -> socket.socket:
    """Connect without blocking the loop. A Unix socket whose listen backlog is
    full answers a non-blocking connect() with EAGAIN, which asyncio would take
    for "in progress" and hand back unconnected: try again shortly instead
    (the caller's timeout bounds it), as the blocking client does."""
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            await asyncio.sleep(0.005)
        except BaseException:
            sock.close()
            raise


class AsyncClient:
    """One pipelined connection to golemd. Use from one event loop.

    Requests raise GolemError like the blocking Client. When the connection
    is lost every outstanding request fails with DAEMON_UNREACHABLE and so
    does every later one; connect again. An exception raised by an event
    callback fails that request (and only it) with that exception.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str):
        self.path = path
        self._reader = reader
        self._writer = writer
        self._unpacker = make_unpacker(strict_map_key=False)  # results may have int keys
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._broken: GolemError | None = None
        self._loop = asyncio.get_running_loop()
        self._reader_task = self._loop.create_task(self._read_loop())

    @classmethod
    async def connect(cls, path: str | os.PathLike[str] | None = None,
                      timeout: float = CONNECT_TIMEOUT) -> AsyncClient:
        p = os.fspath(path) if path else default_socket_path()
        too_long = path_too_long(p)
        if too_long:
            raise too_long
        try:
            async with asyncio.timeout(timeout):
                sock = await _connect_unix(p)
                reader, writer = await asyncio.open_unix_connection(sock=sock)
                small_reads(writer.transport)
        except (OSError, TimeoutError) as e:
            raise explain_connect_error(p, e, timeout) from None
        return cls(reader, writer, p)

    async def close(self) -> None:
        """Close the connection; outstanding requests fail with DAEMON_UNREACHABLE."""
        self._reader_task.cancel()
        try:
            await self._reader_task
        except asyncio.CancelledError:
            pass
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # --- raw requests -----------------------------------------------------

    async def request(self, op: str, /, *, on_event: EventCallback | None = None,
                      reply_timeout: float | None | EllipsisType = ...,
                      **fields: Any) -> dict[str, Any]:
        """Send one request and return its success fields (without `id`).

        on_event gets each event map of this request as it arrives.
        reply_timeout: seconds without any message for this request before
        giving up (DAEMON_UNREACHABLE); `...` is the op's default (none for an
        awaited invoke or a followed stream, else 60 s).
        """
        if self._broken is not None:
            raise GolemError(self._broken.code, self._broken.message)
        if reply_timeout is ...:
            reply_timeout = ops.default_reply_timeout(op, fields)
        self._next_id += 1
        rid = self._next_id
        data = ops.encode_request(op, rid, fields)
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        # If our caller is cancelled after the reader failed the future, its
        # exception would otherwise be logged as "never retrieved".
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        pending = _Pending(fut, on_event, self._loop.time())
        self._pending[rid] = pending
        try:
            self._writer.write(data)
            try:
                await self._writer.drain()
            except OSError as e:
                raise connection_lost(self.path, e) from None
            return ops.final_reply(await self._wait(pending, reply_timeout))
        finally:
            self._pending.pop(rid, None)

    async def call(self, c: Call, on_event: EventCallback | None = None,
                   reply_timeout: float | None | EllipsisType = ...) -> Any:
        """Send `c` (golemd.wire.ops.Call); the reply field it names, of its shape."""
        reply = await self.request(c.op, on_event=on_event, reply_timeout=reply_timeout, **c.fields)
        return ops.unwrap(c, reply)

    async def run(self, steps: Generator[Call, Any, Any]) -> Any:
        """As Client.run: each Call `steps` yields, sent in turn."""
        c = next(steps)
        while True:
            reply = await self.call(c)
            try:
                c = steps.send(reply)
            except StopIteration as done:
                return done.value

    async def _wait(self, p: _Pending, reply_timeout: float | None) -> dict[str, Any]:
        if reply_timeout is None:
            return await p.future
        # An idle deadline: events (e.g. output lines) prove the daemon is alive.
        while True:
            remaining = p.last_activity + reply_timeout - self._loop.time()
            if remaining <= 0:
                raise unreachable(f"no reply from golemd at {self.path} within {reply_timeout:g} s")
            done, _ = await asyncio.wait({p.future}, timeout=remaining)
            if done:
                return p.future.result()

    async def _read_loop(self) -> None:
        err = unreachable(f"the connection to golemd at {self.path} was closed by the client")
        try:
            while True:
                data = await self._reader.read(_RECV_BYTES)
                if not data:
                    err = unreachable(f"golemd at {self.path} closed the connection "
                                      "(did it stop or crash?)")
                    return
                try:
                    self._unpacker.feed(data)
                    messages = list(self._unpacker)
                except Exception as e:  # msgpack's FormatError, StackError, BufferFull...
                    err = ops.protocol_error(f"golemd sent bytes that are not a valid message: {e}")
                    return
                for msg in messages:
                    self._dispatch(ops.check_message(msg))
        except GolemError as e:
            err = e
        except OSError as e:
            err = connection_lost(self.path, e)
        finally:
            self._broken = err
            for p in self._pending.values():
                if not p.future.done():
                    p.future.set_exception(GolemError(err.code, err.message))
            self._writer.close()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        if rid is None and "error" in msg:
            # The daemon could not read some request (PROTOCOL_ERROR,
            # TOO_LARGE) and closes the connection next: fail them all now.
            raise ops.reply_error(msg) or ops.protocol_error(f"golemd sent {msg!r:.200}")
        p = self._pending.get(rid) if isinstance(rid, int) else None
        if p is None or p.future.done():
            return  # its caller gave up (timeout, cancellation): drop it
        p.last_activity = self._loop.time()
        if ops.is_event(msg):
            if p.on_event is not None and isinstance(msg["event"], dict):
                try:
                    p.on_event(msg["event"])
                except Exception as e:
                    p.future.set_exception(e)
            return
        p.future.set_result(msg)

    # --- convenience ops ---------------------------------------------------
    # The same methods as Client's (see there), as coroutine functions.

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any: ...  # the op methods, to a type checker


def _coroutine_method(client_half: Callable[..., Any]) -> Callable[..., Any]:
    """An op's client half returns what AsyncClient.call (or run) returns, a
    coroutine; as a coroutine function it is what callers of an asyncio
    client expect (inspect.iscoroutinefunction is true of it)."""

    async def method(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        return await client_half(self, *args, **kwargs)

    return functools.update_wrapper(method, client_half)


install_ops(AsyncClient, _coroutine_method)
