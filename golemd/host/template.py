"""The template process (the fork server) as the supervisor drives it.

`Template` starts `golemd.host.zygote`, which imports the apps once and
answers with the catalog, then asks it for workers and hears of their exits.
The environment agents get and the sweep of an earlier daemon's orphans are
here too: both hinge on the owner marker the template passes down.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgpack

from golemd.host.worker_handle import LineCallback, Worker
from golemd.wire.codec import pack

log = logging.getLogger("golemd.workers")  # the name it had before the template got its own module

_SCRUBBED_ENV = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                 "WATCHDOG_PID")
_EARLY_MAX = 64 * 1024  # an init message this small is sent along with the spawn request

OWNER_VAR = "GOLEMD_OWNER"


class TemplateError(Exception):
    pass


def agent_environment(owner: str) -> dict[str, str]:
    """The environment agents get: ours, minus systemd's per-service variables,
    plus a marker naming our state directory. Every process an agent starts
    inherits the marker, so a daemon starting after a crash finds them."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env[OWNER_VAR] = owner
    return env


def template_environment(owner: str) -> dict[str, str]:
    """The agents' environment, with the directory that holds our golemd
    package first on PYTHONPATH: the template must import golemd from where
    we were imported."""
    env = agent_environment(owner)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # up from golemd/host/template.py
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
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

    def __init__(self, apps: list[str], owner: str = "") -> None:
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
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "golemd.host.zygote", str(theirs.fileno()), *self.apps],
            pass_fds=(theirs.fileno(),), env=template_environment(self.owner), stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock = ours
        loop = asyncio.get_running_loop()
        data = await loop.sock_recv(ours, 1 << 24)
        msg: dict[str, Any] = (msgpack.unpackb(data, raw=False) if data
                               else {"op": "load_failed", "error": "template exited"})
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

    async def spawn(self, type_name: str, on_line: LineCallback,
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
        if init_late is not None:
            worker.send_packed(init_late)  # a large snapshot goes the usual way
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
