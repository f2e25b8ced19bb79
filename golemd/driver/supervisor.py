"""All agents: lookup, invoke (validation, idempotency, enqueue), worker budget,
recovery from the store at start-up, and draining at shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from golemd import faults
from golemd.config import Config
from golemd.driver import budget, listing
from golemd.driver.agent import Agent
from golemd.driver.durable import Durable
from golemd.driver.limits import memory_limit, oom_message
from golemd.driver.ownership import Routing, forget
from golemd.engine.context import EngineContext, Policy
from golemd.engine.idempotency import KeyMaker, conflict, stored_answer
from golemd.engine.state import HELD
from golemd.host.workers import Template, Worker
from golemd.model.agent_id import AgentId, parse_agent_id
from golemd.model.catalog import check_args
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation, Listener, resolve
from golemd.model.states import InvocationStatus as S
from golemd.model.tracecontext import parse_traceparent
from golemd.storage.base import Store
from golemd.wire.codec import pack

if TYPE_CHECKING:
    from golemd.model.filters import Filter

log = logging.getLogger("golemd.supervisor")

# Told the answer to an invoke request: (reply fields, None) or (None, error).
Done = Callable[[dict[str, Any] | None, GolemError | None], None]


TRIM_DELAY = 0.02  # s: how long the live-worker budget may be exceeded before a trim


class Supervisor:
    def __init__(self, config: Config, store: Store, template: Template):
        self.config = config
        self.store = store
        self.ctx = EngineContext(
            policy=Policy(retry_attempts=config.retry_attempts,
                          retry_backoff_initial=config.retry_backoff_initial,
                          retry_backoff_max=config.retry_backoff_max, idle_timeout=config.idle_timeout,
                          retention_count=config.retention_count,
                          retention_seconds=config.retention_seconds,
                          revert_snapshot_bytes=config.revert_snapshot_bytes),
            clock=time.time, crash_point=faults.crash_point if faults.ARMED else None, batch=config.batch_calls)
        self._template = template
        self.agents: dict[str, Agent] = {}
        self.live: OrderedDict[str, Agent] = OrderedDict()  # agents with a worker, least recent first
        self._ids: dict[str, AgentId] = {}
        self.started = time.time()
        self.logs_dir = os.path.join(config.state_dir, "logs")
        self._keys = KeyMaker()
        self.durable = Durable(self)
        self._trim_timer: asyncio.TimerHandle | None = None
        self.router: Routing | None = None  # a cluster node's (golemd.cluster.router)
        self._early, self._lazy = ("early_start" not in config.perf_off), ("lazy_commit" not in config.perf_off)

    @property
    def template(self) -> Template:
        return self._template

    @template.setter
    def template(self, template: Template) -> None:
        """New code (a reload): workers on the old finish what they run, then stop."""
        self._template = template
        self.ctx.generation += 1
        for agent in self.agents.values():
            agent.unsend()  # calls sent ahead would run on the old code

    @property
    def draining(self) -> bool:
        return self.ctx.draining

    @property
    def types(self) -> dict[str, dict[str, Any]]:
        return self.template.types

    # -- lookup ------------------------------------------------------------

    def parse_id(self, text: str) -> AgentId:
        """parse_agent_id, remembered: the same few IDs arrive over and over."""
        aid = self._ids.get(text)
        if aid is None:
            aid = parse_agent_id(text)
            if len(self._ids) >= 10_000:
                self._ids.clear()
            self._ids[text] = aid
        return aid

    def methods_of(self, info: dict[str, Any]) -> dict[str, dict[str, Any]]:
        index = info.get("_index")
        if index is None:
            index = info["_index"] = {m["name"]: m for m in info["methods"]}
        return index  # type: ignore[no-any-return]

    def find(self, agent: str) -> Agent:
        aid = self.parse_id(agent)
        found = self.agents.get(aid.canonical)
        if found is None:
            raise GolemError(Code.AGENT_NOT_FOUND, f"agent {aid.canonical} does not exist")
        return found

    def type_info_of(self, aid: AgentId) -> dict[str, Any]:
        info = self.types.get(aid.type)
        if info is None:
            known = ", ".join(sorted(self.types)) or "none"
            raise GolemError(Code.UNKNOWN_TYPE, f"no agent type {aid.type!r} is loaded (loaded: {known})")
        return info

    # -- invoke ------------------------------------------------------------

    async def invoke(self, req: dict[str, Any], listener: Listener | None = None) -> dict[str, Any]:
        """submit(), awaited: the reply's fields, or the GolemError raised."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def done(reply: dict[str, Any] | None, err: GolemError | None) -> None:
            if fut.done():
                return
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(reply or {})

        self.submit(req, listener, done)
        return await fut

    def submit(self, req: dict[str, Any], listener: Listener | None, done: Done) -> None:
        """Validate an invoke request and answer it from the idempotency record,
        or enqueue it. `done(reply, None)` or `done(None, error)` is called
        exactly once: now, at the enqueue's commit (a trigger), or with the
        outcome (await). Callbacks rather than a task per request: a warm
        call is answered in the loop round its worker's reply arrives in.
        In a cluster the router decides where (golemd.cluster.router)."""
        (self.router.submit if self.router is not None else self.local_submit)(req, listener, done)

    def local_submit(self, req: dict[str, Any], listener: Listener | None, done: Done) -> None:
        try:
            self._submit(req, listener, done)
        except GolemError as err:
            done(None, err)  # _submit raises only before anything was answered or attached

    def _submit(self, req: dict[str, Any], listener: Listener | None, done: Done) -> None:
        if self.draining:
            raise GolemError(Code.SHUTTING_DOWN, "the daemon is stopping and accepts no new invocations")
        aid = self.parse_id(req["agent"])
        info = self.type_info_of(aid)
        method, args = req["method"], req.get("args") or []
        methods = self.methods_of(info)
        if method not in methods:
            raise GolemError(Code.UNKNOWN_METHOD, f"{aid.type} has no method {method!r} "
                             f"(methods: {', '.join(methods) or 'none'})")
        problem = check_args(f"{aid.type}.{method}", methods[method], args)
        if problem:
            raise GolemError(Code.INVALID_ARGUMENTS, problem)
        agent = self.agents.get(aid.canonical)
        if agent is None:
            problem = check_args(aid.type, info["constructor"], list(aid.args))
            if problem:
                raise GolemError(Code.INVALID_AGENT_ID, f"{aid.canonical} does not fit the constructor: {problem}")
        mode = req.get("mode") or "await"
        key = req.get("idempotency_key")
        args_packed = pack([method, args])
        if key is None:
            key = self._keys.new()  # new, so there is nothing to look up
        elif agent is not None and self._existing(agent, key, args_packed, mode, listener, done,
                                                  req.get("traceparent")):
            return
        if agent is not None:
            eng = agent.engine
            if eng.failed_error is not None:
                raise GolemError.from_wire(eng.failed_error)
            if eng.pending_count >= self.config.max_pending:
                raise GolemError(Code.QUEUE_FULL, f"{agent.name} already has {eng.pending_count} "
                                 f"pending invocations (max_pending = {self.config.max_pending})")
        if agent is None:
            agent = self.create(aid, info)
        timeout = req.get("timeout") or methods[method].get("timeout")
        self._enqueue(agent, req, key, method, args, args_packed, mode, listener, done, timeout)

    def _enqueue(self, agent: Agent, req: dict[str, Any], key: str, method: str,
                 args: list[Any], args_packed: bytes, mode: str, listener: Listener | None,
                 done: Done, timeout: float | None) -> None:
        now = time.time()
        schedule_at = req.get("schedule_at")
        eng = agent.engine
        inv = Invocation(key=key, method=method, args=args, args_packed=args_packed,
                         seq=eng.take_seq(), created_at=now,
                         status=S.SCHEDULED if schedule_at and schedule_at > now else S.PENDING,
                         schedule_at=schedule_at,
                         timeout=timeout,
                         journaled=False)
        if req.get("traceparent"):  # validated already (golemd.wire.ops.invoke.check)
            inv.trace_parent = parse_traceparent(req["traceparent"])
        # An awaited call to an idle warm agent goes to its worker first and
        # is journaled while the worker runs it: the insert is off the call's
        # critical path, and the commit is shared with its outcome's when the
        # reply comes soon (on_commit_idle below), never after it. If the
        # enqueue fails, the call is stopped with its worker (withdraw).
        early = (mode == "await" and listener is None and inv.status is S.PENDING and self._early
                 and eng.ready_warm())
        if early:
            self._attach(agent, inv, key, mode, listener, done)
            agent.start_early(inv)
        try:
            inv.rowid = self.store.enqueue_invocation(agent.name, key, inv.seq, method, args_packed,
                                                      inv.status._value_, now, schedule_at, inv.timeout)
        except Exception as exc:
            if early:
                err = exc if isinstance(exc, GolemError) else GolemError(
                    Code.INTERNAL, f"the journal failed: {exc!r}")
                agent.withdraw(inv, err)  # stopped, and its caller answered
                return
            self._forget_if_new(agent)
            raise
        faults.crash_point("enqueued")
        # Where it stands, for a streaming caller's `queued` event.
        ahead = len(eng.queue.fifo) + (1 if eng.current else 0) if listener is not None else 0
        if not early:
            self._attach(agent, inv, key, mode, listener, done)
            agent.enqueue(inv)  # in the queue now, to start once the commit below is done

        def journaled(err: GolemError | None) -> None:
            if err is not None:
                # Not journaled, so not accepted: it must not run either (or, started
                # early, must leave no trace).
                agent.withdraw(inv, err)
                self._forget_if_new(agent)
                if mode != "await":
                    done(None, err)
                return
            faults.crash_point("acked")
            agent.creation_unsaved = False
            if mode != "await":
                done({"idempotency_key": key, "status": "pending"}, None)
            elif listener is not None and inv.status == S.PENDING:
                if ahead:
                    listener({"type": "queued", "ahead": ahead})
                if eng.interrupted:
                    listener(HELD)
            agent.journaled(inv)

        if early and self._lazy:
            # Nobody is waiting on this commit but the call's own outcome: it may
            # wait for the reply and share its commit (or for the loop to idle).
            self.store.on_commit_idle(journaled)
        else:
            self.store.on_commit(journaled)

    def _forget_if_new(self, agent: Agent) -> None:
        """An agent whose creation was not journaled does not exist, once the
        last invocation that came with it (in the same failed commit) is gone."""
        if (agent.creation_unsaved and not agent.engine.queue.active and agent.current is None
                and self.agents.get(agent.name) is agent):
            del self.agents[agent.name]

    def _attach(self, agent: Agent, inv: Invocation, key: str, mode: str, listener: Listener | None,
                done: Done) -> bool:
        """Make an awaiting caller a waiter of `inv`; False for a trigger (nothing to wait for)."""
        if mode != "await":
            return False
        if listener is not None:
            inv.listeners.append(listener)
            agent.engine.listened += 1

        def waiter(value: Any, error: GolemError | None) -> None:
            if listener is not None:
                # A finished invocation must not keep a dead connection's callback alive.
                agent.engine.listened -= 1
                if listener in inv.listeners:
                    inv.listeners.remove(listener)
            if error is not None:
                done(None, error)
            else:
                done({"idempotency_key": key, "result": value}, None)

        inv.waiters.append(waiter)
        return True

    def _existing(self, agent: Agent, key: str, args_packed: bytes, mode: str,
                  listener: Listener | None, done: Done, traceparent: str | None = None) -> bool:
        """Answer for a key this agent has seen (True), or False for a new key."""
        inv = agent.engine.queue.active.get(key)
        if inv is not None:
            if inv.args_packed != args_packed:
                raise conflict(agent.name, key, inv.method)
            if traceparent and inv.trace_parent is None:
                # Recovered without one (it is not journaled): its caller, waiting
                # again after the restart, puts it back in its trace.
                inv.trace_parent = parse_traceparent(traceparent)
            if self._attach(agent, inv, key, mode, listener, done):
                if listener is not None and inv.status != S.RUNNING and agent.engine.interrupted:
                    listener(HELD)  # this caller's alone: the others were told before
            else:
                ack = {"idempotency_key": key, "status": "running" if inv.status == S.RUNNING else "pending"}
                if inv.journaled:
                    done(ack, None)
                else:  # an early call: it is not accepted before its enqueue commits
                    self.store.on_commit(lambda err: done(None, err) if err else done(ack, None))
            return True
        row = self.store.get_invocation(agent.name, key)
        if row is None:
            return False
        answer = stored_answer(agent.name, key, row, args_packed, mode)
        # The row may be this loop round's, not committed yet (an outcome
        # written a moment ago): answer from the commit, as its first caller is.
        self.store.on_commit(lambda err: done(None, err) if err is not None else done(answer, None))
        return True

    def create(self, aid: AgentId, info: dict[str, Any], env_vars: dict[str, str] | None = None) -> Agent:
        agent = Agent(self, aid, info, env_vars=env_vars or {})
        agent.creation_unsaved = True  # until a commit with its row succeeds
        self.store.insert_agent({
            "agent_id": agent.name, "env": aid.env, "type": aid.type, "args": pack(list(aid.args)),
            "created_at": agent.engine.created_at, "last_active_at": agent.engine.last_active_at,
            "env_vars": pack(env_vars) if env_vars else None})
        agent.engine.event("created")
        self.agents[agent.name] = agent
        return agent

    async def new(self, text: str, env_vars: dict[str, str]) -> tuple[Agent, bool]:
        """agent new (golemd.driver.lifecycle.new)."""
        from golemd.driver.lifecycle import new

        return await new(self, text, env_vars)

    # -- control -----------------------------------------------------------

    async def revert(self, agent: Agent, count: int | None, last_index: int | None) -> list[str]:
        """agent revert (golemd.driver.lifecycle.revert)."""
        from golemd.driver.lifecycle import revert

        return await revert(self, agent, count, last_index)

    async def delete(self, agent: Agent) -> dict[str, Any]:
        meta = agent.metadata()
        self.durable.forget_agent(agent)
        agent.delete()
        self.agents.pop(agent.name, None)
        self.live.pop(agent.name, None)
        self.store.delete_agent(agent.name)
        await self.store.commit()
        return meta

    def list(self, env: str | None, type_: str | None, status: str | None,
             limit: int | None = None, after: str | None = None,
             filters: Sequence[Filter] = ()) -> tuple[list[dict[str, Any]], str | None]:
        """Matching agents in agent ID order, a page at a time: (page, cursor of the next page)."""
        return listing.select(self.agents, env, type_, status, filters, limit, after)

    # -- workers -----------------------------------------------------------

    def trim(self) -> None:
        """Back under max_live_workers (golemd.driver.budget)."""
        budget.trim(self)

    def trim_soon(self) -> None:
        """Over the budget: trim shortly, in one batch, rather than on the path
        of the call that went over (a suspension is an event, a commit and a
        kill; a new agent's first call is ~2 ms and should not wait for one)."""
        if self._trim_timer is None and len(self.live) > self.config.max_live_workers:
            self._trim_timer = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim_due)

    def _trim_due(self) -> None:
        self._trim_timer = None
        self.trim()

    async def spawn_worker(self, agent: Agent, init: dict[str, Any]) -> Worker:
        limit = memory_limit(agent.type_info, self.config.memory_limit_mb, agent.id.type)
        init["oom"] = oom_message(limit)  # what a MemoryError without a message will say
        init["title"] = f"golemd: {agent.name}"  # in ps (golemd.host.proctitle)
        worker = await self.template.spawn(agent.id.type, agent.on_output, limit[0], init)
        self.live[agent.name] = agent
        self.trim_soon()
        return worker

    def touch(self, agent: Agent) -> None:
        if agent.name in self.live:
            self.live.move_to_end(agent.name)

    def worker_gone(self, agent: Agent, worker: Worker) -> None:
        if agent.worker is None and self.live.get(agent.name) is agent:
            del self.live[agent.name]

    # -- recovery and shutdown ---------------------------------------------

    def adopt(self, agent_id: str) -> None:
        """A cluster node took this agent: load it from the store (golemd.driver.ownership)."""
        from golemd.driver.recovery import recover

        if agent_id not in self.agents:
            recover(self, only=(agent_id,))

    def forget(self, agent_id: str, err: GolemError) -> None:
        """A cluster node lost this agent: stop it without a write, its callers told `err`."""
        agent = self.agents.pop(agent_id, None)
        if agent is not None:
            self.live.pop(agent_id, None)
            self.durable.forget_agent(agent)
            forget(agent, err)

    def recover(self) -> int:
        """Rebuild agents and queues from the store. Returns the number of agents."""
        from golemd.driver.recovery import recover

        return recover(self)

    async def drain(self, timeout: float) -> None:
        """Stop starting invocations; let running ones finish for `timeout` seconds."""
        self.ctx.draining = True
        for agent in self.agents.values():
            agent.unsend()  # only what runs finishes
        await self._settled(timeout)

    async def _settled(self, timeout: float) -> None:
        """Wait until no agent runs anything (warm path and runners alike)."""
        waits = [a.settled() for a in self.agents.values() if a.busy and not a.waiting]
        if waits:
            await asyncio.wait(waits, timeout=timeout)

    async def stop_all(self) -> None:
        """Kill every worker; answer every waiting caller. Pending work stays journaled."""
        self.ctx.draining = True
        for agent in self.agents.values():
            agent.shutdown()
        await self._settled(10)
        shutting = GolemError(Code.SHUTTING_DOWN, "the daemon is stopping; the invocation stays "
                              "queued and runs after the restart")
        for agent in self.agents.values():
            for inv in agent.engine.queue.waiting():
                resolve(inv.waiters, error=shutting)
            agent.output.end("shutdown")
        waits = [a.worker.wait(2.0) for a in self.agents.values() if a.worker is not None]
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.agents.values():
            counts[a.status.value] = counts.get(a.status.value, 0) + 1
        return counts

