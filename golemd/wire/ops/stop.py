"""`stop`: shut the daemon down gracefully, as SIGTERM does.

Request: no fields.

Success: `{"ok": true}`, then the shutdown starts: no new connections,
running invocations may finish within the grace period, the rest stays
journaled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {}
MUTATING = True


def client(self: Caller) -> Any:
    """Start a graceful shutdown: {"ok": True}."""
    return self.call(Call("stop", {}, None, MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    d.request_stop()
    return {"ok": True}
