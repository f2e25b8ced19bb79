"""`dashboard`: a one-time login URL for the web dashboard.

Request: no fields.

Success: `{"url": URL, "expires_in": SECONDS, "loopback": BOOL}`: opening URL
in a browser within `expires_in` seconds logs that browser in (once: the
token in it is spent by its first use) with a session cookie that lasts
`http_session_seconds`. `loopback` says whether the dashboard listens on a
loopback address only. Who may connect to the socket may log in: that is
the dashboard's whole access rule.

Errors: `NOT_ENABLED` (golemd runs without `http`; the message says how to
turn it on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {}
MUTATING = True  # a login may cancel, interrupt and delete: logged with who asked


def client(self: Caller) -> Any:
    """A one-time dashboard login: {"url", "expires_in", "loopback"}."""
    return self.call(Call("dashboard", {}, None, MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    return d.dashboard_login()
