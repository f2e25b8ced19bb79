"""Start, talk to, stop and reap worker processes, through the template process.

`Template` owns the fork server; `Worker` is the supervisor's handle on one
worker: its control channel (msgpack frames on a socketpair), its stdout and
stderr pipes, and its exit.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgpack

from golemd.perf import cork
from golemd.wire.codec import make_unpacker, pack, small_reads

log = logging.getLogger("golemd.workers")

_SCRUBBED_ENV = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                 "WATCHDOG_PID")
MAX_WORKER_MESSAGE = 256 * 1024 * 1024
MAX_LINE = 64 * 1024
_EARLY_MAX = 64 * 1024  # an init message this small is sent along with the spawn request


ReplyCallback = Callable[[Any, "WorkerDied | None"], None]


class WorkerDied(Exception):
    """The worker's control channel closed: the process died or was killed."""


class TemplateError(Exception):
    pass


OWNER_VAR = "GOLEMD_OWNER"


def agent_environment(owner: str) -> dict[str, str]:
    """The environment agents get: ours, minus systemd's per-service variables,
    plus a marker naming our state directory. Every process an agent starts
    inherits the marker, so a daemon starting after a crash finds them."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env[OWNER_VAR] = owner
    return env


def sweep_orphans(owner: str) -> int:
    """Kill processes left by an earlier daemon on the same state directory.

    Called with the state directory's lock held, so any process carrying our
    marker belongs to a daemon that is gone (killed with -9: its workers die
    by the parent-death signal, but their own children may not)."""
    import psutil

    me = os.getpid()
    killed = 0
    for proc in psutil.process_iter(["environ"]):
        try:
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get(OWNER_VAR) == owner and proc.pid != me:
            try:
                proc.kill()
                killed += 1
            except psutil.NoSuchProcess:
                pass
    return killed


class Template:
    """The fork server. `start()` imports the apps there and returns the catalog."""

    def __init__(self, apps: list[str], owner: str = ""):
        self.apps = apps
        self.owner = owner
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.types: dict[str, dict[str, Any]] = {}
        self._req = itertools.count(1)
        self._spawns: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.on_lost: Callable[[], None] | None = None
        self.workers = 0  # alive, as far as we know: a retired template waits for them
        self.retired = False

    async def start(self) -> dict[str, dict[str, Any]]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        env = agent_environment(self.owner)
        # The template must import golemd from where we were imported.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "golemd.host.zygote", str(theirs.fileno()), *self.apps],
            pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock = ours
        loop = asyncio.get_running_loop()
        data = await loop.sock_recv(ours, 1 << 24)
        msg = msgpack.unpackb(data, raw=False) if data else {"op": "load_failed", "error": "template exited"}
        if msg.get("op") != "ready":
            self.proc.wait()
            raise TemplateError(f"the apps could not be loaded:\n{msg.get('error')}")
        self.types = msg["types"]
        self._reader = asyncio.create_task(self._read())
        return self.types

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        try:
            while True:
                data = await loop.sock_recv(self.sock, 1 << 16)
                if not data:
                    break
                msg = msgpack.unpackb(data, raw=False)
                op = msg.get("op")
                if op == "spawned":
                    fut = self._spawns.pop(msg["req"], None)
                    if fut and not fut.done():
                        fut.set_result(msg["pid"])
                elif op == "spawn_failed":
                    fut = self._spawns.pop(msg["req"], None)
                    if fut and not fut.done():
                        fut.set_exception(TemplateError(msg["error"]))
                elif op == "exited":
                    fut = self._exits.setdefault(msg["pid"], loop.create_future())
                    if not fut.done():
                        fut.set_result(msg["code"])
                    self.workers -= 1
                    if self.retired and self.workers <= 0:
                        loop.call_soon(self.stop)
        except (OSError, ValueError) as exc:
            log.error("template channel broke: %s", exc)
        finally:
            for fut in self._spawns.values():
                if not fut.done():
                    fut.set_exception(TemplateError("the template process exited"))
            self._spawns.clear()
            if self.proc is not None and self.proc.poll() is None:
                log.error("template process stopped answering")
            if self.on_lost is not None:
                self.on_lost()

    async def spawn(self, type_name: str, on_line: Callable[[str, str, bool], None],
                    memory_limit_mb: int, init: dict[str, Any]) -> Worker:
        """A new worker. `init` is its first control message (building the agent): sent
        as soon as the spawn is asked for, so the fork and the constructor's
        start overlap our wait for the pid; its reply is `worker.initialized`."""
        if self.sock is None or self._reader is None or self._reader.done():
            raise TemplateError("the template process is not running")
        loop = asyncio.get_running_loop()
        init_late: bytes | None = None
        ctl_ours, ctl_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        req = next(self._req)
        fut: asyncio.Future[int] = loop.create_future()
        self._spawns[req] = fut
        try:
            _send_fds(self.sock, pack({"op": "spawn", "req": req, "type": type_name,
                                       "memory_limit": memory_limit_mb * 1024 * 1024}),
                      [ctl_theirs.fileno(), out_w, err_w])
            early = pack(init)
            if len(early) <= _EARLY_MAX:
                ctl_ours.send(early)  # fits a fresh socket's buffer: never blocks
            else:
                init_late = early
        finally:
            ctl_theirs.close()
            os.close(out_w)
            os.close(err_w)
        try:
            pid = await fut
        except BaseException:
            ctl_ours.close()
            os.close(out_r)
            os.close(err_r)
            raise
        self.workers += 1
        exit_fut = self._exits.setdefault(pid, loop.create_future())
        worker = Worker(pid, ctl_ours, exit_fut, lambda: self._exits.pop(pid, None), self)
        worker.initialized = worker.expect("init")
        try:
            await worker.attach(out_r, err_r, on_line)
        except BaseException:
            worker.kill()
            worker.forget_pending()  # its death will never be read: nothing waits on it
            raise
        if init_late is not None and worker._transport is not None:
            worker._transport.write(init_late)  # a large snapshot goes the usual way
        return worker

    def retire(self) -> None:
        """Replaced by a new template: stop once the last of our workers is gone
        (they finish their calls on the code they started with)."""
        self.retired = True
        self.on_lost = None
        if self.workers <= 0:
            self.stop()

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()


def _send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    # A spawn request is a few dozen bytes and the template reads promptly;
    # a full socket buffer would mean the template is wedged.
    try:
        socket.send_fds(sock, [data], fds)
    except BlockingIOError as exc:
        raise TemplateError("the template process is not reading its requests") from exc


class _Lines(asyncio.Protocol):
    """Splits a worker's output pipe into lines, bounding each line's size."""

    def __init__(self, name: str, on_line: Callable[[str, str, bool], None], done: asyncio.Future[None]):
        self.name = name
        self.on_line = on_line
        self.buf = b""
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        small_reads(transport)

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


class _Control(asyncio.Protocol):
    """The worker's control channel: replies resolve their futures as they
    arrive, without a reader task in between."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.unpacker = make_unpacker(MAX_WORKER_MESSAGE, strict_map_key=False)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
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

    # _pending changes only through these three, which keep in_flight its sum.

    def _await_reply(self, key: Any, waiter: asyncio.Future[dict[str, Any]] | ReplyCallback) -> None:
        if key not in self._pending:
            Worker.in_flight += 1
        self._pending[key] = waiter

    def _take_reply(self, key: Any) -> asyncio.Future[dict[str, Any]] | ReplyCallback | None:
        waiter = self._pending.pop(key, None)
        if waiter is not None:
            Worker.in_flight -= 1
        return waiter

    def forget_pending(self) -> dict[Any, asyncio.Future[dict[str, Any]] | ReplyCallback]:
        """Everything awaited, taken: its answers will never be read."""
        pending, self._pending = self._pending, {}
        Worker.in_flight -= len(pending)
        return pending

    def __init__(self, pid: int, ctl: socket.socket, exit_fut: asyncio.Future[int],
                 forget: Callable[[], Any], template: Template | None = None):
        self.pid = pid
        self.template = template
        self.ctl = ctl
        self.exit_fut = exit_fut
        self._forget = forget
        self.alive = True
        self.killed = False
        self.protocol_error = False
        self._calls = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]] | ReplyCallback] = {}
        self._transport: asyncio.Transport | None = None
        self._outputs: list[asyncio.Future[None]] = []
        self.death_reason: str | None = None
        self.on_dead: Callable[[Worker], None] | None = None
        self.initialized: asyncio.Future[dict[str, Any]] | None = None  # see Template.spawn(init=)
        self._pipes: list[tuple[asyncio.ReadTransport, _Lines]] = []
        self._psutil: Any = None

    async def attach(self, out_r: int, err_r: int, on_line: Callable[[str, str, bool], None]) -> None:
        loop = asyncio.get_running_loop()
        pipes = []
        for name, fd in (("stdout", out_r), ("stderr", err_r)):
            done: asyncio.Future[None] = loop.create_future()
            self._outputs.append(done)
            pipe = os.fdopen(fd, "rb", buffering=0)
            pipes.append(loop.connect_read_pipe(lambda n=name, d=done: _Lines(n, on_line, d), pipe))
        # Side by side: each takes a loop round or two, and a new agent's
        # first call waits for all three.
        (self._transport, _), *attached = await asyncio.gather(
            loop.connect_accepted_socket(lambda: _Control(self), sock=self.ctl), *pipes)
        self._pipes = [(transport, protocol) for transport, protocol in attached]
        # Its death is certain once the template reaped it, even if a descendant
        # still holds the control socket open: close our end then.
        self.exit_fut.add_done_callback(lambda _f: self._transport and self._transport.close())

    def _on_message(self, msg: Any) -> None:
        key = msg.get("id", "init") if isinstance(msg, dict) else None
        pending = self._take_reply(key)
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

    def _request(self, key: Any, msg: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if not self.alive or self._transport is None or self._transport.is_closing():
            fut.set_exception(WorkerDied(self.death_reason or "it is not running"))
            return fut
        self._await_reply(key, fut)
        self._transport.write(pack(msg))
        return fut

    def expect(self, key: Any) -> asyncio.Future[dict[str, Any]]:
        """A future for the reply to a message sent before we were attached."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._await_reply(key, fut)
        return fut

    def call(self, method: str, args: list[Any]) -> asyncio.Future[dict[str, Any]]:
        call_id = next(self._calls)
        return self._request(call_id, {"op": "call", "id": call_id, "method": method, "args": args})

    def call_then(self, method: str, args: list[Any], then: ReplyCallback) -> None:
        """Send a call; `then(reply, None)` runs from inside the read of the
        reply, or `then(None, WorkerDied)` when the worker dies first. No
        future and no task in between: this is the warm invocation's path."""
        if not self.alive or self._transport is None or self._transport.is_closing():
            then(None, WorkerDied(self.death_reason or "it is not running"))
            return
        call_id = next(self._calls)
        self._await_reply(call_id, then)
        self._transport.write(pack({"op": "call", "id": call_id, "method": method, "args": args}))

    def drain_output(self) -> None:
        """Read now what the worker wrote before its reply. It flushes its
        output before it answers, but the event loop may see the reply first,
        and a streaming caller must get an invocation's lines before its result."""
        for transport, protocol in self._pipes:
            if transport.is_closing():
                continue  # its fd may be closed, even reused
            fd = transport.get_extra_info("pipe").fileno()
            while True:
                try:
                    data = os.read(fd, 1 << 16)
                except OSError:  # EAGAIN: nothing more; anything else is the transport's to see
                    break
                if not data:
                    break  # end of file: left for the transport, which closes on it
                protocol.data_received(data)

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
        for target in (lambda: os.killpg(self.pid, sig), lambda: os.kill(self.pid, sig)):
            try:
                target()
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
