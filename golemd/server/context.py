"""What the server needs of the daemon that runs it: a protocol, so that the
server does not import the daemon (which imports the server)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

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
