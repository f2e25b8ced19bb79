"""golemctl: the command-line client of golemd, and its Python client library.

    from golemctl import Client
    with Client.connect() as c:
        print(c.invoke('CounterAgent("c1")', "increment")["result"])

Names are resolved lazily so that `golemctl --help` does not pay for the
socket, msgpack and asyncio imports it never uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from golemctl.aio import AsyncClient
    from golemctl.client import Client
    from golemctl.paths import default_socket_path

__all__ = ["AsyncClient", "Client", "default_socket_path"]

_HOMES = {"AsyncClient": "golemctl.aio", "Client": "golemctl.client",
          "default_socket_path": "golemctl.paths"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'golemctl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
