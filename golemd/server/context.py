"""What the server needs of the daemon that runs it: a protocol, so that the
server does not import the daemon (which imports the server); and the daemon
as the ops' handlers see it (golemd.wire.ops.context.Daemon), which cannot
import the daemon, the driver or the host either (golemctl imports them)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from golemd.host.worker_handle import Worker
from golemd.wire.ops.registry import HANDLERS

if TYPE_CHECKING:
    from golemd.config import Config
    from golemd.driver.supervisor import Supervisor
    from golemd.server.access import Access


class ServerContext(Protocol):
    config: Config
    supervisor: Supervisor
    access: Access
    connections: set[Any]
    socket_path: str

    async def reload(self) -> None: ...

    def request_stop(self) -> None: ...

    def dashboard_login(self) -> dict[str, Any]: ...


class OpContext:
    """golemd.wire.ops.context.Daemon over a ServerContext: what the handlers
    of golemd/wire/ops/ are given."""

    __slots__ = ("_daemon",)

    def __init__(self, daemon: ServerContext):
        self._daemon = daemon

    @property
    def supervisor(self) -> Supervisor:
        return self._daemon.supervisor

    @property
    def socket_path(self) -> str:
        return self._daemon.socket_path

    @property
    def state_dir(self) -> str:
        return self._daemon.config.state_dir

    def calls_in_flight(self) -> int:
        return Worker.in_flight

    async def reload(self) -> None:
        await self._daemon.reload()

    def request_stop(self) -> None:
        self._daemon.request_stop()

    def dashboard_login(self) -> dict[str, Any]:
        return self._daemon.dashboard_login()


async def serve_op(daemon: ServerContext, ops: OpContext, op: str, req: dict[str, Any],
                   emit: Callable[[dict[str, Any]], None], forwarded: bool = False) -> dict[str, Any]:
    """Run an op but invoke (validated already): its handler here, or, on a
    cluster node, wherever the router says (the agent's owner). The socket's
    connections and the dashboard's API both answer through this."""
    def local() -> Coroutine[Any, Any, dict[str, Any]]:
        return HANDLERS[op](ops, req, emit)

    router = daemon.supervisor.router
    if router is None:
        return await local()
    return await router.run_op(op, req, emit, local, forwarded)
