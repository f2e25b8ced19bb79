"""The daemon's lifecycle: lock -> recover -> bind -> ready -> serve -> drain -> exit.

Signal handlers only record; the loop acts. The first SIGTERM/SIGINT drains
(running invocations may finish within drain_timeout, the rest stay
journaled), a second one stops the workers at once. SIGHUP reloads the apps.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from golemd import systemd
from golemd.config import Config
from golemd.driver.supervisor import Supervisor
from golemd.engine.observer import combine
from golemd.host.template import Template, sweep_orphans
from golemd.host.worker_handle import Worker
from golemd.model.errors import Code, GolemError
from golemd.perf import cork
from golemd.perf.spin import hook_loop
from golemd.server.access import Access
from golemd.server.connection import Connection
from golemd.server.listener import bind_unix_socket
from golemd.storage.base import LoopHooks, Store
from golemd.storage.open import open_store

if TYPE_CHECKING:
    from golemd.cluster.node import Node
    from golemd.http.metrics import Metrics
    from golemd.http.server import HttpServer
    from golemd.tracing import Tracing

log = logging.getLogger("golemd")


class StartupError(Exception):
    pass


def _raise_fd_limit() -> None:
    """Every connection and every worker costs fds: take all the hard limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _tune_gc() -> None:
    """Collect cycles less often: every invocation allocates a few dozen
    short-lived objects, and with the default threshold (700) the collector
    ran every ~20 invocations over every invocation in flight, about a tenth
    of the daemon's time under load (`bench/RESULTS.md`). What start-up
    imported and built before any agent (modules, the catalog, the config) is
    frozen out of collections altogether."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


GC_THRESHOLD = 50_000


def _tracing(endpoint: str) -> Tracing:
    """The tracing observer, exporting to `endpoint`; OpenTelemetry is imported only here."""
    try:
        from golemd.tracing import Tracing
    except ImportError as exc:
        raise StartupError(f"otel_endpoint is set, but OpenTelemetry is not installed ({exc.name} is "
                           "missing): pip install 'golemd[otel]'") from None
    import golemd

    return Tracing.to_endpoint(endpoint, golemd.__version__)


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        self.stop_requested = asyncio.Event()
        self.force = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None
        self.supervisor: Supervisor = None  # type: ignore[assignment]
        self.connections: set[Connection] = set()
        self._lock: FileLock | None = None
        self._owns_socket = False
        self.socket_path = config.socket
        self.retired: list[Template] = []
        self.http: HttpServer | None = None
        self.metrics: Metrics | None = None
        self.node: Node | None = None
        self.tracing: Tracing | None = None

    # -- start-up ----------------------------------------------------------

    def _lock_state_dir(self) -> None:
        os.makedirs(self.config.state_dir, mode=0o700, exist_ok=True)
        lock_path = os.path.join(self.config.state_dir, "golemd.lock")
        pid_path = os.path.join(self.config.state_dir, "golemd.pid")
        self._lock = FileLock(lock_path)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            try:
                holder = open(pid_path).read().strip()
            except OSError:
                holder = "unknown"
            raise StartupError(f"another golemd (pid {holder}) is running on state directory "
                               f"{self.config.state_dir}") from None
        with open(pid_path, "w") as f:
            f.write(f"{os.getpid()}\n")

    def _listening_socket(self) -> socket.socket:
        fds = systemd.listen_fds()
        if fds:
            sock = socket.socket(fileno=fds[0])
            name = sock.getsockname()
            if isinstance(name, str) and name:
                self.socket_path = name  # what systemd bound, whatever --socket says
            log.info("using the socket passed by systemd (fd %d, %s)", fds[0], self.socket_path)
            return sock
        self._owns_socket = True
        return bind_unix_socket(self.config.socket, self.config.socket_group)

    async def run(self) -> int:
        self._lock_state_dir()
        _raise_fd_limit()
        groups = self.config.allow_groups + ((self.config.socket_group,) if self.config.socket_group else ())
        self.access = Access(self.config.allow_uids, groups)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)
        owner = os.path.abspath(self.config.state_dir)
        swept = sweep_orphans(owner)
        if swept:
            log.warning("killed %d processes left by a previous golemd on %s", swept, owner)
        if self.config.otel_endpoint is not None:
            self.tracing = _tracing(self.config.otel_endpoint)
        store = open_store(self.config)
        cork.enabled = "cork" not in self.config.perf_off
        cpus = len(os.sched_getaffinity(0))

        def busy() -> bool:
            return Worker.in_flight >= cpus  # every CPU has a worker's call to run

        if self.config.http is not None:
            from golemd.http.metrics import Metrics

            self.metrics = Metrics()
        store.attach(LoopHooks.for_loop(loop, busy=busy, idle_hook=hook_loop(loop, store.idle, busy),
                                        commit_timer=self.metrics.commit_timer if self.metrics else None))
        template = Template(list(self.config.apps), owner)
        try:
            types = await template.start()
        except Exception as exc:
            store.close()
            raise StartupError(str(exc)) from exc
        _tune_gc()  # before recovery: recovered agents stay collectable once deleted
        self.supervisor = Supervisor(self.config, store, template)
        # None when neither is on: the engine then pays nothing for observers.
        self.supervisor.ctx.observer = combine(self.metrics, self.tracing)
        if self.metrics is not None:
            self.metrics.watch(self.supervisor, self._open_connections, lambda: Worker.in_flight)
        template.on_lost = self._template_lost
        # Recovery reads the whole store; give systemd's start timeout room for it.
        systemd.notify("EXTEND_TIMEOUT_USEC=300000000\nSTATUS=recovering agents from the store")
        if self.config.node is not None:
            count = await self._join_cluster(template, store)  # agents come as the node takes them
        else:
            count = self.supervisor.recover()
        log.info("loaded %d agent types (%s); recovered %d agents", len(types),
                 ", ".join(sorted(types)) or "none", count)
        if self.config.http is not None:
            await self._start_http(template, store)  # before the socket: a failure leaves none behind
        try:
            sock = self._listening_socket()
        except Exception:
            if self.http is not None:
                await self.http.stop()
            template.stop()
            store.close()
            raise
        # asyncio would listen(100) again on our socket: a burst of clients needs more.
        self.server = await loop.create_unix_server(self._connection, sock=sock, backlog=1024)
        log.info("golemd %d listening on %s, state in %s", os.getpid(), self.socket_path,
                 self.config.state_dir)
        systemd.notify(f"READY=1\nSTATUS=serving {count} agents\nMAINPID={os.getpid()}")
        watchdog = asyncio.create_task(self._watchdog())
        await self.stop_requested.wait()
        watchdog.cancel()
        await self.shutdown()
        return 0

    def _connection(self) -> Connection:
        if self.metrics is not None:
            self.metrics.socket_connection()
        return Connection(self)

    def _open_connections(self) -> dict[str, int]:
        return {"socket": len(self.connections),
                "http": self.http.open_connections() if self.http is not None else 0}

    async def _start_http(self, template: Template, store: Store) -> None:
        from golemd.http.server import HttpServer

        assert self.metrics is not None
        self.http = HttpServer(self, self.metrics)
        try:
            await self.http.start()
        except OSError as exc:
            template.stop()
            store.close()
            raise StartupError(f"cannot serve HTTP on {self.config.http}: {exc.strerror or exc}") from exc

    async def _join_cluster(self, template: Template, store: Any) -> int:
        from golemd.cluster.join import join

        try:
            self.node = await join(self, store)
        except Exception as exc:
            template.stop()
            store.close()
            raise StartupError(f"cannot join the cluster as node {self.config.node}: {exc}") from exc
        return 0

    def dashboard_login(self) -> dict[str, Any]:
        if self.http is None:
            raise GolemError(Code.NOT_ENABLED, "the dashboard is off: start golemd with "
                             "--http 127.0.0.1:7070 (or http = \"127.0.0.1:7070\" in golemd.toml)")
        return self.http.login_url()

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        if interval is None:
            return
        while True:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _reload_in_background(self) -> None:
        async def run() -> None:
            try:
                await self.reload()
            except GolemError:
                pass  # already logged; the running code stays

        asyncio.ensure_future(run())

    def _template_lost(self) -> None:
        if not self.stop_requested.is_set():
            log.error("the template process died; starting a new one")
            self._reload_in_background()

    # -- reload and shutdown ---------------------------------------------

    async def reload(self) -> None:
        """Re-import the apps in a new template; new workers use the new code.

        Raises GolemError(LOAD_FAILED) and keeps the running code when the
        new code cannot be imported."""
        old = self.supervisor.template
        new = Template(list(self.config.apps), old.owner)
        try:
            await new.start()
        except Exception as exc:
            log.error("reload failed, keeping the running code: %s", exc)
            raise GolemError(Code.LOAD_FAILED, f"reload failed, the running code stays: {exc}") from exc
        new.on_lost = self._template_lost
        self.supervisor.template = new
        for agent in list(self.supervisor.agents.values()):
            agent.type_info = new.types.get(agent.id.type, agent.type_info)
            agent.suspend()  # idle workers restart on the new code; busy ones finish first
        old.retire()
        self.retired = [t for t in self.retired if t.sock is not None] + [old]  # for a stop at shutdown
        log.info("reloaded apps: %s", ", ".join(sorted(new.types)) or "none")

    def request_stop(self) -> None:
        if self.stop_requested.is_set():
            log.warning("second stop request: stopping workers now")
            self.force.set()
            return
        log.info("stopping: no new connections; running invocations may finish")
        systemd.notify("STOPPING=1\nSTATUS=draining running invocations")
        self.stop_requested.set()

    async def shutdown(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.http is not None:
            await self.http.stop()
        sup = self.supervisor
        drain = asyncio.ensure_future(sup.drain(self.config.drain_timeout))
        forced = asyncio.ensure_future(self.force.wait())
        await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        await sup.stop_all()
        # Let connections write their final replies, then close them: their
        # read ends with EOF and each handler finishes in its own `finally`.
        await asyncio.sleep(0)
        for conn in list(self.connections):
            conn.close()
        deadline = asyncio.get_running_loop().time() + 2
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        sup.store.commit_now()
        if self.node is not None:
            await self.node.stop()  # its leases end now: other nodes take its agents at once
        sup.store.close()
        if self.tracing is not None:
            self.tracing.shutdown()  # every outcome is told by now: its spans go out before the exit
        sup.template.stop()
        for old in self.retired:
            old.stop()
        if self._owns_socket:
            try:
                os.unlink(self.config.socket)
            except FileNotFoundError:
                pass
        if self._lock is not None:
            self._lock.release()
        log.info("stopped")
