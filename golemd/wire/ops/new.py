"""`new`: create an agent without invoking it (Golem's `agent new`).

Request: `agent` (str, required): agent ID; `env` (map of str to str):
the agent's own environment variables, set in its process (on top of
golemd's) before its constructor runs, on every start; default none.

The constructor runs now, in the agent's new process; the reply comes once
it has returned. Success: `{"agent": METADATA, "created": true}`; the same ID
again with the same `env`: `{"agent": METADATA, "created": false}` (nothing
changes). METADATA's `env_vars` shows the variables.

Errors: `AGENT_EXISTS` (the agent exists with other environment variables:
delete it first to change them), `AGENT_FAILED` (the constructor raised: the
agent exists, Failed, until deleted; `details` is the exception),
`INVALID_AGENT_ID` (also when the ID's arguments do not fit the
constructor), `UNKNOWN_TYPE`, `SHUTTING_DOWN`, `STORAGE_FULL`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.wire.ops import MAP, Call

if TYPE_CHECKING:
    from collections.abc import Mapping

    from golemd.model.agent_id import AgentId
    from golemd.wire.ops.context import Caller, Daemon, Emit, Fields

FIELDS: Fields = {"agent": ((str,), True), "env": ((dict,), False)}
MUTATING = True
MAX_ENV = 256  # variables per agent
MAX_ENV_BYTES = 64 * 1024  # all names and values together


def check(msg: dict[str, Any]) -> str | None:
    env = msg.get("env")
    if env is None:
        return None
    if len(env) > MAX_ENV:
        return f"an agent has at most {MAX_ENV} environment variables"
    size = 0
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str):
            return "field 'env' maps names to values, both strings"
        if not name or "=" in name or "\0" in name or "\0" in value:
            return f"environment variable name {name[:40]!r} is empty, or has '=' or NUL"
        size += len(name) + len(value)
    if size > MAX_ENV_BYTES:
        return f"the environment variables take more than {MAX_ENV_BYTES} characters"
    return None


def client(self: Caller, agent: str | AgentId, env: Mapping[str, str] | None = None) -> Any:
    """Create the agent (its constructor runs) without invoking it:
    {"agent": METADATA, "created": bool}."""
    return self.call(Call("new", {"agent": str(agent), "env": dict(env) if env else None}, None, MAP))


async def handle(d: Daemon, req: dict[str, Any], emit: Emit) -> dict[str, Any]:
    agent, created = await d.supervisor.new(req["agent"], dict(req.get("env") or {}))
    return {"agent": agent.metadata(), "created": created}
