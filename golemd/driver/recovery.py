"""Recovery at start-up: every agent, its queue and its unfinished
invocations rebuilt from the store, with the effects journaled so far; an
invocation whose journal ends on a wait is parked (no process) and its wait
registered again (golemd.driver.durable)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import msgpack

from golemd.driver.agent import Agent, AgentHost
from golemd.driver.effect_codec import waiting_for
from golemd.model.agent_id import make_agent_id
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation
from golemd.model.states import InvocationStatus as S


class Host(AgentHost, Protocol):
    """What recovery needs of the daemon's agents (golemd.driver.supervisor.Supervisor)."""

    agents: dict[str, Agent]

    @property
    def types(self) -> dict[str, dict[str, Any]]: ...


def recover(sup: Host, only: tuple[str, ...] | None = None) -> int:
    """Rebuild agents and queues from the store. Returns the number of
    agents. `only`: just these agents (a cluster node taking them over)."""
    waiting: list[tuple[Agent, Invocation, float | None]] = []
    if only is None:
        next_seqs = sup.store.next_seqs()
        active = sup.store.load_active()
        effects = sup.store.load_active_effects()
        for row in sup.store.load_agents():
            _rebuild(sup, row, next_seqs.get(row["agent_id"], 0), active.get(row["agent_id"], ()),
                     effects, waiting)
    else:
        for agent_id in only:
            one = sup.store.load_one(agent_id)
            if one.row is not None:
                _rebuild(sup, one.row, one.next_seq, one.active, one.effects, waiting)
    for agent, inv, until in waiting:  # once every agent is known: a wait may be on any of them
        sup.durable.rearm(agent, inv, until)
    sup.store.commit_now()
    return len(sup.agents)


def _rebuild(sup: Host, row: dict[str, Any], next_seq: int, active: Iterable[dict[str, Any]],
             effects: dict[tuple[str, str], list[dict[str, Any]]],
             waiting: list[tuple[Agent, Invocation, float | None]]) -> None:
    args = msgpack.unpackb(row["args"], raw=False, strict_map_key=False)
    aid = make_agent_id(row["env"], row["type"], args)
    info = sup.types.get(aid.type)
    agent = Agent(sup, aid, info, row)
    eng = agent.engine
    eng.next_seq = next_seq
    sup.agents[agent.name] = agent
    if row["failed_error"]:
        eng.failed_error = msgpack.unpackb(row["failed_error"], raw=False)
    if info is None:
        eng.failed_error = {"code": Code.AGENT_FAILED.value,
                            "message": f"agent type {aid.type!r} is not loaded"}
        eng.last_error = f"AGENT_FAILED: agent type {aid.type!r} is not loaded"
    for inv_row in active:
        status = S(inv_row["status"])
        if status == S.RUNNING:  # never journaled today; a running one runs again
            status = S.PENDING
        method, args = msgpack.unpackb(inv_row["args"], raw=False, strict_map_key=False)
        inv = Invocation(key=inv_row["key"], method=method, args=args,
                         args_packed=bytes(inv_row["args"]), seq=inv_row["seq"],
                         created_at=inv_row["created_at"], status=status,
                         schedule_at=inv_row["schedule_at"], timeout=inv_row["timeout"],
                         rowid=inv_row["id"])
        rows = effects.get((agent.name, inv.key))
        if rows:
            inv.journal = [[r["kind"], bytes(r["request"]), r["result"]] for r in rows]
            last = rows[-1]
            if last["result"] is None:  # it waits: parked (no process) until the wait ends
                req = msgpack.unpackb(last["request"], raw=False, strict_map_key=False)
                inv.waiting_for = waiting_for(last["kind"], req, last["until"])
                inv.effect_at = last["started_at"]
                waiting.append((agent, inv, last["until"]))
        agent.enqueue(inv)
    if eng.failed_error is not None and eng.pending_count:
        agent.fail_all_pending(GolemError.from_wire(eng.failed_error))
