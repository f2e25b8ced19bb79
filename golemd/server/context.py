"""What the server needs of the daemon that runs it: a protocol, so that the
server does not import the daemon (which imports the server); and the daemon
as the ops' handlers see it (golemd.wire.ops.context.Daemon), which cannot
import the daemon, the driver or the host either (golemctl imports them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from golemd.host.worker_handle import Worker

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
