"""Agent operations beyond invoking: create one without invoking it (agent
new) and take one back to before its last invocations (agent revert)."""

from __future__ import annotations

from typing import Any

from golemd.driver.agent import Agent
from golemd.model.catalog import check_args
from golemd.model.errors import Code, GolemError


async def new(sup: Any, text: str, env_vars: dict[str, str]) -> tuple[Agent, bool]:
    """`sup` is the Supervisor. Create the agent without invoking it: its constructor runs now, in
    its process (agent new). (agent, created); the same ID again with the
    same environment variables: (agent, False); with others: AGENT_EXISTS."""
    if sup.draining:
        raise GolemError(Code.SHUTTING_DOWN, "the daemon is stopping and creates no agents")
    aid = sup.parse_id(text)
    agent = sup.agents.get(aid.canonical)
    if agent is not None:
        if agent.env_vars != env_vars:
            raise GolemError(Code.AGENT_EXISTS, f"{aid.canonical} exists already with other environment "
                             f"variables ({_env_text(agent.env_vars)}); delete it first to change them")
        return agent, False
    info = sup.type_info_of(aid)
    problem = check_args(aid.type, info["constructor"], list(aid.args))
    if problem:
        raise GolemError(Code.INVALID_AGENT_ID, f"{aid.canonical} does not fit the constructor: {problem}")
    agent = sup.create(aid, info, env_vars)
    try:
        await sup.store.commit()
        agent.creation_unsaved = False
    except GolemError:
        if sup.agents.get(agent.name) is agent:
            del sup.agents[agent.name]
        raise
    await agent.warm_up()
    return agent, True


async def revert(sup: Any, agent: Agent, count: int | None, last_index: int | None) -> list[str]:
    """agent revert: forget the last `count` invocations that ran, or
    those that finished after oplog entry `last_index`; the agent's state
    goes back to what it was before them. The keys forgotten."""
    from golemd.engine.revert import plan

    after: set[str] | None = None
    if last_index is not None:
        after = {e["idempotency_key"] for e in sup.store.oplog(agent.name, None)
                 if e["index"] > last_index and e["kind"] in ("completed", "failed") and "idempotency_key" in e}
    todo = plan(sup.store.history(agent.name), agent.engine.completed_count, count=count, after=after)
    agent.revert(todo)
    await sup.store.commit()
    return todo.keys


def _env_text(env_vars: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(env_vars.items())) or "none"
