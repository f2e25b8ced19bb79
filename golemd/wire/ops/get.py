"""`get`: an agent's metadata.

Request: `agent` (str, required): agent ID.

Success: `{"agent": METADATA}`, the map docs/protocol.md describes
(`agent_id`, `type`, `env`, `args`, `status`, `pending_invocation_count`,
`env_vars`, `current_invocation`, `waiting_for`, `pid`, `created_at`, `last_active_at`,
`completed_count`, `failed_count`, `retry_count`, `last_error`,
`memory_rss_bytes`, `cpu_seconds`, `output_cut_lines`, `output_dropped_bytes`).

Errors: `AGENT_NOT_FOUND` (never invoked, or deleted: `get` never creates
an agent), `INVALID_AGENT_ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True)}
MUTATING = False


def client(self: Caller, agent: str | AgentId) -> Any:
    """The agent's metadata; AGENT_NOT_FOUND if it was never invoked."""
    return self.call(Call("get", {"agent": str(agent)}, "agent", MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    return {"agent": d.supervisor.find(req["agent"]).metadata()}
