"""`reload`: re-import the apps.

Request: no fields.

Success: `{"ok": true}`. The apps are imported in a new template process:
idle workers are stopped and restart on the new code at their next
invocation, running ones finish first.

Errors: `LOAD_FAILED` (the apps could not be imported; the running code stays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {}
MUTATING = True


def client(self: Caller) -> Any:
    """Re-import the apps: {"ok": True}."""
    return self.call(Call("reload", {}, None, MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    await d.reload()
    return {"ok": True}
