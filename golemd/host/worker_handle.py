"""The supervisor's handle on one worker process.

Its control channel (msgpack frames on a socketpair) and the replies awaited
on it, its stdout and stderr pipes, its resource usage, and its exit.
The template process (template.py) spawns workers and builds these handles.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import msgpack

from golemd.perf import cork
from golemd.wire.codec import READ_BYTES, make_unpacker, pack, small_reads
from golemd.wire.worker import DROP, EFFECT, EFFECT_RESULT

if TYPE_CHECKING:
    import psutil

log = logging.getLogger("golemd.workers")

MAX_WORKER_MESSAGE = 256 * 1024 * 1024
MAX_LINE = 64 * 1024

# A reply is awaited under its call's id, or under "init" for the init message.
ReplyKey = int | str
# Told the reply: (reply, None), or (None, WorkerDied) when the worker dies first.
ReplyCallback = Callable[[dict[str, Any] | None, "WorkerDied | None"], None]
Waiter = asyncio.Future[dict[str, Any]] | ReplyCallback
LineCallback = Callable[[str, str, bool], None]  # (stream name, line, whether it was cut)


class WorkerDied(Exception):
    """The worker's control channel closed: the process died or was killed."""


class _Lines:
    """Splits a worker's output pipe into lines, bounding each line's size."""

    def __init__(self, name: str, on_line: LineCallback, done: asyncio.Future[None]) -> None:
        self.name = name
        self.on_line = on_line
        self.buf = b""
        self.done = done

    def data_received(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self.on_line(self.name, line.decode("utf-8", "replace"), False)
        while len(self.buf) > MAX_LINE:
            chunk, self.buf = self.buf[:MAX_LINE], self.buf[MAX_LINE:]
            self.on_line(self.name, chunk.decode("utf-8", "replace"), True)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buf:
            self.on_line(self.name, self.buf.decode("utf-8", "replace"), False)
            self.buf = b""
        if not self.done.done():
            self.done.set_result(None)


class _Pipe:
    """A worker's stdout or stderr, read through the loop's add_reader and
    split into lines by _Lines. No transport: connect_read_pipe costs a
    coroutine, a transport, a waiter and three loop callbacks per pipe, two
    pipes per worker, and W4 starts 10,000 workers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, lines: _Lines) -> None:
        self.loop = loop
        self.fd = fd
        self.lines = lines
        self.open = True
        os.set_blocking(fd, False)
        loop.add_reader(fd, self.read)

    def read(self, drain: bool = False) -> None:
        """Read what is there (once, from the loop; `drain`: until none is left)."""
        while self.open:
            try:
                data = os.read(self.fd, READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self.lines.data_received(data)
            if not drain:
                return

    def close(self) -> None:
        """At its end of file: every writer (the worker, its descendants) is gone."""
        if self.open:
            self.open = False
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.lines.connection_lost(None)


class _Control(asyncio.Protocol):
    """The worker's control channel: replies resolve their futures as they
    arrive, without a reader task in between."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.unpacker = make_unpacker(MAX_WORKER_MESSAGE, strict_map_key=False)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A connected stream socket's transport (connect_accepted_socket).
        self.transport = cast(asyncio.Transport, transport)
        small_reads(transport)

    def data_received(self, data: bytes) -> None:
        cork.hold()
        try:
            self.unpacker.feed(data)
            for msg in self.unpacker:
                self.worker._on_message(msg)
        except (ValueError, msgpack.UnpackException, TypeError, AttributeError) as exc:
            self.worker._on_broken(exc)
            if self.transport is not None:
                self.transport.close()
        finally:
            cork.release()

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker._on_closed(exc)


class Worker:
    """One worker process as the supervisor sees it."""

    in_flight = 0  # messages sent to all workers and not yet answered (golemd.perf.spin polls only when few)

    def __init__(self, pid: int, ctl: socket.socket, exit_fut: asyncio.Future[int],
                 forget: Callable[[], object], template: object | None = None) -> None:
        self.pid = pid
        # The Template that spawned it; only compared (is it the current one?).
        # Typed as object: a Template type here would make the two modules import each other.
        self.template = template
        self.ctl = ctl
        self.exit_fut = exit_fut
        self._forget = forget
        self.alive = True
        self.killed = False
        self.protocol_error = False
        self._calls = itertools.count(1)
        self._pending: dict[ReplyKey, Waiter] = {}
        self._transport: asyncio.Transport | None = None
        self._deferred: list[bytes] = []  # calls sent ahead, written together by flush()
        self._corked = False  # waiting in golemd.perf.cork for its flush
        self._outputs: list[asyncio.Future[None]] = []
        self.death_reason: str | None = None
        self.on_dead: Callable[[Worker], None] | None = None
        # Told each durable effect the worker asks for (golemd.driver.durable);
        # none: an effect is a protocol error.
        self.on_effect: Callable[[dict[str, Any]], None] | None = None
        self.initialized: asyncio.Future[dict[str, Any]] | None = None  # see Template.spawn(init=)
        self._pipes: list[_Pipe] = []
        self._psutil: psutil.Process | None = None

    # _pending changes only through these three, which keep in_flight its sum.

    def _await_reply(self, key: ReplyKey, waiter: Waiter) -> None:
        if key not in self._pending:
            Worker.in_flight += 1
        self._pending[key] = waiter

    def _take_reply(self, key: ReplyKey) -> Waiter | None:
        waiter = self._pending.pop(key, None)
        if waiter is not None:
            Worker.in_flight -= 1
        return waiter

    def forget_pending(self) -> dict[ReplyKey, Waiter]:
        """Everything awaited, taken: its answers will never be read."""
        pending, self._pending = self._pending, {}
        Worker.in_flight -= len(pending)
        return pending

    async def attach(self, out_r: int, err_r: int, on_line: LineCallback) -> None:
        loop = asyncio.get_running_loop()
        self._pipes = [self._read_pipe(loop, "stdout", out_r, on_line), self._read_pipe(loop, "stderr", err_r, on_line)]
        self._transport, _ = await loop.connect_accepted_socket(functools.partial(_Control, self), sock=self.ctl)
        # Its death is certain once the template reaped it, even if a descendant
        # still holds the control socket open: close our end then.
        self.exit_fut.add_done_callback(self._close_control)

    def _read_pipe(self, loop: asyncio.AbstractEventLoop, name: str, fd: int, on_line: LineCallback) -> _Pipe:
        done: asyncio.Future[None] = loop.create_future()
        self._outputs.append(done)
        return _Pipe(loop, fd, _Lines(name, on_line, done))

    def _close_control(self, _exit: asyncio.Future[int]) -> None:
        if self._transport is not None:
            self._transport.close()

    def _on_message(self, msg: Any) -> None:  # whatever the unpacker made of its bytes
        if isinstance(msg, dict) and msg.get("op") == EFFECT and self.on_effect is not None:
            self.on_effect(msg)  # raises ValueError for a malformed one: the channel is broken
            return
        pending = self._take_reply(msg.get("id", "init")) if isinstance(msg, dict) else None
        if pending is None:
            raise ValueError(f"unexpected control message {str(msg)[:100]}")
        if isinstance(pending, asyncio.Future):
            if not pending.done():
                pending.set_result(msg)
            return
        try:
            pending(msg, None)
        except Exception:
            # Our bug, not the worker's: it must not pass for a protocol error.
            log.exception("handling a reply of worker %d failed", self.pid)

    def _on_broken(self, exc: BaseException) -> None:
        self.death_reason = str(exc)[:200]
        self.protocol_error = True
        self.kill()

    def _on_closed(self, exc: Exception | None) -> None:
        if self.death_reason is None:
            self.death_reason = f"its control channel failed ({exc})" if exc else "its control channel closed"
        self.alive = False
        err = WorkerDied(self.death_reason)
        for waiting in self.forget_pending().values():
            if not isinstance(waiting, asyncio.Future):
                try:
                    waiting(None, err)
                except Exception:
                    log.exception("handling the death of worker %d failed", self.pid)
            elif not waiting.done():
                waiting.set_exception(err)
        if self.on_dead is not None:
            self.on_dead(self)

    def _request(self, key: ReplyKey, msg: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if not self.alive or self._transport is None or self._transport.is_closing():
            fut.set_exception(WorkerDied(self.death_reason or "it is not running"))
            return fut
        self._await_reply(key, fut)
        self._transport.write(pack(msg))
        return fut

    def expect(self, key: ReplyKey) -> asyncio.Future[dict[str, Any]]:
        """A future for the reply to a message sent before we were attached."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._await_reply(key, fut)
        return fut

    def send_packed(self, data: bytes) -> None:
        """Send a message packed already, whose reply is awaited already
        (a large init message: see Template.spawn)."""
        if self._transport is not None:
            self._transport.write(data)

    def call(self, method: str, args: list[Any]) -> asyncio.Future[dict[str, Any]]:
        call_id = next(self._calls)
        return self._request(call_id, {"op": "call", "id": call_id, "method": method, "args": args})

    def call_then(self, method: str, args: list[Any], then: ReplyCallback, defer: bool = False,
                  journal: list[list[Any]] | None = None) -> int:
        """Send a call; `then(reply, None)` runs from inside the read of the
        reply (or of `{"op": "dropped"}`, see drop), or `then(None, WorkerDied)`
        when the worker dies first. No future and no task in between: this is
        the warm invocation's path. `defer`: written by the next flush(), with
        the others deferred. Returns the call's id (0: not sent)."""
        if not self.alive or self._transport is None or self._transport.is_closing():
            then(None, WorkerDied(self.death_reason or "it is not running"))
            return 0
        call_id = next(self._calls)
        self._await_reply(call_id, then)
        msg: dict[str, Any] = {"op": "call", "id": call_id, "method": method, "args": args}
        if journal:
            msg["journal"] = journal  # a re-run: these effects are replayed, not run again
        data = pack(msg)
        if defer:
            self._deferred.append(data)
            if not self._corked and cork.held():
                # Written once the burst of work that sends them is done (a
                # commit's callbacks, a read): one write, one wake-up of the
                # worker, for all the calls the burst made ready.
                self._corked = True
                cork.later(self)
        else:
            if self._deferred:
                self.flush()  # the stream keeps the order they were sent in
            self._transport.write(data)
        return call_id

    def effect_result(self, call_id: int, seq: int, res: bytes) -> None:
        """Answer the worker's effect `seq` of call `call_id` with its journaled result."""
        self.flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(pack({"op": EFFECT_RESULT, "id": call_id, "seq": seq, "res": res}))

    def flush_soon(self) -> None:
        """flush() now, or at the end of the burst when corked."""
        if not self._corked:
            self.flush()

    def flush(self) -> None:
        """Write the deferred calls, in one write."""
        self._corked = False
        if self._deferred:
            data = b"".join(self._deferred)
            self._deferred.clear()
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(data)

    def drop(self, call_id: int) -> None:
        """Ask the worker to drop call `call_id` and every call sent after it,
        unless it has started it: each dropped one is answered
        `{"op": "dropped", "id": ...}`; one already started runs as usual."""
        self.flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(pack({"op": DROP, "id": call_id}))

    def poll(self) -> None:
        """Read and dispatch, now, what the worker has written so far."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        # Through the transport: a reference of ours to the protocol would make
        # a cycle that outlives the connection.
        control = cast(_Control, transport.get_protocol())
        while True:
            try:
                data = self.ctl.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # the transport sees the error on its own read
            if not data:
                return  # end of file: left for the transport, which closes on it
            control.data_received(data)

    def drain_output(self) -> None:
        """Read now what the worker wrote before its reply. It flushes its
        output before it answers, but the event loop may see the reply first,
        and a streaming caller must get an invocation's lines before its result."""
        for pipe in self._pipes:
            pipe.read(drain=True)  # a closed one reads nothing: its fd may be reused

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker and its process group.

        A descendant that left the group (setsid) is still below the worker,
        which is a subreaper; when the worker dies such processes are
        re-parented to the template, which kills every child that is not a
        live worker. So nothing an agent started outlives it, and stopping a
        worker costs two syscalls, not a scan of /proc."""
        if self.exit_fut.done():
            return
        self.killed = True
        for send in (os.killpg, os.kill):
            try:
                send(self.pid, sig)
            except OSError as exc:
                if exc.errno not in (errno.ESRCH, errno.EPERM):
                    raise

    async def stop(self, grace: float) -> int | None:
        """SIGTERM, then SIGKILL if it is still there after `grace` seconds."""
        if grace > 0 and not self.exit_fut.done():
            self.kill(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exit_fut), grace)
            except TimeoutError:
                pass
        self.kill(signal.SIGKILL)
        return await self.wait()

    async def wait(self, timeout: float = 5.0) -> int | None:
        """Wait for the process to be reaped and its output drained; its exit code."""
        try:
            code = await asyncio.wait_for(asyncio.shield(self.exit_fut), timeout)
        except TimeoutError:
            return None
        finally:
            if self.exit_fut.done():
                self._forget()
        # asyncio.wait, not wait_for: two waiters may share these futures, and a
        # timeout must not cancel them under the other one.
        await asyncio.wait(self._outputs, timeout=1.0)  # a descendant may hold a pipe open
        return code

    def usage(self) -> tuple[int | None, float | None]:
        """RSS bytes and CPU seconds of the process, or (None, None)."""
        if not self.alive:
            return None, None
        try:
            import psutil

            if self._psutil is None:
                self._psutil = psutil.Process(self.pid)
            with self._psutil.oneshot():
                mem = self._psutil.memory_info().rss
                cpu = self._psutil.cpu_times()
            return int(mem), float(cpu.user + cpu.system)
        except Exception:
            return None, None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "it died (exit status unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"it was killed by {name}"
    return f"it exited with status {code}"
