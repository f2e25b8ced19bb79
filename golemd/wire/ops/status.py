"""`status`: the daemon's own state.

Request: no fields.

Success: `{"version", "pid", "uptime" (seconds), "agents" (int),
"agents_by_status" (map status -> int), "live_workers" (int),
"calls_in_flight" (int: messages sent to workers and not answered yet),
"socket", "state_dir"}`.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import golemd
from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {}
MUTATING = False


def client(self: Caller) -> Any:
    """golemd's version, pid, uptime and counts."""
    return self.call(Call("status", {}, None, MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    sup = d.supervisor
    return {
        "version": golemd.__version__,
        "pid": os.getpid(),
        "uptime": time.time() - sup.started,
        "agents": len(sup.agents),
        "agents_by_status": sup.status_counts(),
        "live_workers": sum(1 for a in sup.agents.values() if a.worker is not None and a.worker.alive),
        "calls_in_flight": d.calls_in_flight(),
        "socket": d.socket_path,
        "state_dir": d.state_dir,
    }
