"""The daemon's half of durable execution (DESIGN.md §5): each effect a worker
asks for is journaled, carried out, and its result journaled before the
worker is told (golemd.host.effects is the worker's half).

Effects come in two shapes. Instant ones (step, trigger, promise, complete)
are journaled with their result in one write and answered from its commit.
Waits (call, sleep, wait on a promise) are journaled as asked, then
registered here: a callee's outcome, a timer or a completion ends them, and
their result is journaled and then given to the worker blocked on it, or,
when it has none (suspended after suspend_after, restarted, interrupted),
the invocation is sent again to a new worker, which replays up to there.
A wait is registered again from the journal at recovery, so a waiting
invocation needs no process across a restart.

What waits now, and who waits on whom (CALL_CYCLE): golemd.driver.waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from golemd import faults
from golemd.driver.effect_codec import (
    WAITS,
    derived_key,
    effect_done,
    error_res,
    invoke_request,
    promise_id,
    value_res,
    waiting_for,
)
from golemd.driver.effect_codec import unpack as _unpack
from golemd.driver.waits import Waits
from golemd.model.agent_id import DEFAULT_ENV
from golemd.model.effects import describe_request, describe_result
from golemd.model.errors import Code, GolemError
from golemd.model.states import ACTIVE
from golemd.wire.codec import pack

if TYPE_CHECKING:
    from golemd.config import Config
    from golemd.engine.agent import AgentEngine
    from golemd.engine.context import EngineContext
    from golemd.host.workers import Worker
    from golemd.model.agent_id import AgentId
    from golemd.model.invocation import Invocation
    from golemd.storage.base import Store

log = logging.getLogger("golemd.durable")

# Errors that are a callee invocation's outcome, stored with it under its key.
OUTCOMES = frozenset({Code.INVOCATION_FAILED, Code.TIMEOUT, Code.AGENT_DIED, Code.AGENT_FAILED,
                      Code.SNAPSHOT_FAILED, Code.PROTOCOL_ERROR, Code.NONDETERMINISM})


class Agent(Protocol):
    """What durable execution needs of one agent (golemd.driver.agent.Agent)."""

    name: str
    id: AgentId
    engine: AgentEngine
    worker: Worker | None

    @property
    def current(self) -> Invocation | None: ...

    def wait_ended(self, inv: Invocation) -> None: ...

    def suspend_waiting(self, inv: Invocation) -> None: ...

    def rerun(self, inv: Invocation) -> None: ...

    def waiting_started(self) -> None: ...


class Host(Protocol):
    """What it needs of the daemon's agents (golemd.driver.supervisor.Supervisor)."""

    store: Store
    ctx: EngineContext
    config: Config

    @property
    def agents(self) -> dict[str, Any]: ...

    def submit(self, req: dict[str, Any], listener: Any, done: Callable[..., None]) -> None: ...

    def parse_id(self, text: str) -> AgentId: ...


class Durable:
    def __init__(self, sup: Host) -> None:
        self.sup = sup
        self.waits = Waits()

    @property
    def _store(self) -> Any:
        return self.sup.store

    def _now(self) -> float:
        return self.sup.ctx.clock()

    # -- from the worker ------------------------------------------------------

    def on_effect(self, agent: Agent, msg: dict[str, Any]) -> None:
        """An `effect` from the agent's worker. Raises ValueError for one that
        breaks the protocol (the channel is then broken and the worker killed)."""
        inv = agent.current
        if inv is None or inv.call_id != msg.get("id") or inv.discard is not None:
            # From a call no longer the worker's own, or one whose run must not
            # count (its enqueue failed, or it runs on a state the journal does
            # not hold): the worker is being stopped, and nothing of it is journaled.
            return
        seq, kind, req = msg.get("seq"), msg.get("kind"), msg.get("req")
        if not isinstance(seq, int) or not isinstance(kind, str) or not isinstance(req, bytes):
            raise ValueError("an effect needs the integer 'seq', the string 'kind' and the bytes 'req'")
        journal = inv.journal if inv.journal is not None else []
        inv.journal = journal
        if seq < len(journal):
            entry = journal[seq]
            if entry[0] != kind or bytes(entry[1]) != req:
                raise ValueError(f"effect #{seq} does not match the journal the worker was sent")
            inv.live_seq = seq
            if entry[2] is not None:
                self._tell_worker(agent, inv, seq, entry[2])
            elif not self.waits.registered(agent.name, inv):
                # Journaled as asked, no longer registered (its end could not be
                # journaled): registered again, with the deadline it was journaled with.
                rows = [r for r in self._store.load_effects(agent.name, inv.key) if r["seq"] == seq]
                self._rearm(agent, inv, seq, kind, _unpack(req), rows[0]["until"] if rows else None)
            return
        if seq != len(journal):
            raise ValueError(f"effect #{seq} skips a number (the journal has {len(journal)})")
        if kind != "step":  # a step has run by now: its crash window is the worker's
            faults.crash_point("effect")
            if faults.kill_worker_point("effect") and agent.worker is not None:
                agent.worker.kill()  # before it is journaled: the re-run makes it live
                return
        handler = self._HANDLERS.get(kind)
        request = _unpack(req)
        if handler is None or not isinstance(request, dict):
            raise ValueError(f"unknown effect kind {kind!r}" if handler is None else "an effect's 'req' is a map")
        journal.append([kind, req, None])
        inv.live_seq, inv.effect_at = seq, self._now()
        self._tell_listeners(inv, {"type": "effect", "seq": seq, "kind": kind,
                                   "detail": describe_request(kind, request)})
        handler(self, agent, inv, seq, request, msg.get("res"))

    # -- instant effects: journaled with their result, answered at the commit ---

    def _instant(self, agent: Agent, inv: Invocation, seq: int, res: bytes) -> None:
        assert inv.journal is not None
        kind, req = inv.journal[seq][0], inv.journal[seq][1]
        now = self._now()
        self._store.put_effect(agent.name, inv.key, seq, kind, req, now, result=res, finished_at=now)
        inv.journal[seq][2] = res
        self._answer_at_commit(agent, inv, seq, res)

    def _step(self, agent: Agent, inv: Invocation, seq: int, request: dict[str, Any], res: bytes | None) -> None:
        if res is None:
            raise ValueError("a step effect needs its 'res'")
        self._instant(agent, inv, seq, res)

    def _promise(self, agent: Agent, inv: Invocation, seq: int, request: dict[str, Any], res: bytes | None) -> None:
        pid = promise_id(agent.name, inv.key, seq)
        self._store.put_promise(pid, agent.name, inv.key, seq, self._now())
        self._instant(agent, inv, seq, value_res(pid))

    def _complete(self, agent: Agent, inv: Invocation, seq: int, request: dict[str, Any], res: bytes | None) -> None:
        try:
            self.complete(str(request.get("promise")), request.get("value"))
            out = value_res(None)
        except GolemError as err:
            out = error_res(str(err.code), err.message)
        self._instant(agent, inv, seq, out)

    def _trigger(self, agent: Agent, inv: Invocation, seq: int, request: dict[str, Any], res: bytes | None) -> None:
        target, problem = self._target(agent, request)
        if target is None:
            self._instant(agent, inv, seq, problem)
            return
        key = derived_key(agent.name, inv.key, seq)
        refused: list[GolemError] = []

        def done(reply: dict[str, Any] | None, err: GolemError | None) -> None:
            if err is not None:
                refused.append(err)

        # The callee's enqueue and this effect's row go in the same commit:
        # both or neither, so a re-run never enqueues twice.
        self.sup.submit(invoke_request(target, request, key, "trigger", agent.name, inv, seq,
                                       self.sup.ctx.observer is not None), None, done)
        if refused and not self._transient(refused[0]):
            self._instant(agent, inv, seq, error_res(str(refused[0].code), refused[0].message))
        elif refused:
            self._unsaved(agent, inv)  # the daemon is stopping: it runs again after the restart
        else:
            self._instant(agent, inv, seq, value_res(key))

    # -- waits ------------------------------------------------------------------

    def _call(self, agent: Agent, inv: Invocation, seq: int, request: dict[str, Any], res: bytes | None) -> None:
        target, problem = self._target(agent, request)
        if target is None:
            self._instant(agent, inv, seq, problem)
            return
        cycle = self.waits.cycle(agent.name, target)
        if cycle is not None:
            self._instant(agent, inv, seq, error_res(
                Code.CALL_CYCLE.value, "this call would wait on itself: " + " -> ".join(cycle)
                + " (each agent runs one invocation at a time)"))
            return
        self._wait_journaled(agent, inv, seq, None)
        self._rearm(agent, inv, seq, "call", request, None)

    def _sleep(self, agent: Agent, inv: Invocation, seq: int, request: dict[str, Any], res: bytes | None) -> None:
        seconds = request.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError("a sleep needs a number of seconds")
        until = self._now() + seconds
        self._wait_journaled(agent, inv, seq, until)
        self._rearm(agent, inv, seq, "sleep", request, until)

    def _wait(self, agent: Agent, inv: Invocation, seq: int, request: dict[str, Any], res: bytes | None) -> None:
        pid = request.get("promise")
        row = self._store.get_promise(pid) if isinstance(pid, str) else None
        if row is None:
            self._instant(agent, inv, seq, error_res(Code.NOT_FOUND.value, f"no promise {pid!r}"))
            return
        if row["completed_at"] is not None:
            self._instant(agent, inv, seq, pack({"value": _unpack(row["value"])}))
            return
        timeout = request.get("timeout")
        until = self._now() + timeout if isinstance(timeout, (int, float)) else None
        self._wait_journaled(agent, inv, seq, until)
        self._rearm(agent, inv, seq, "wait", request, until)

    _HANDLERS: dict[str, Callable[..., None]] = {
        "step": _step, "promise": _promise, "complete": _complete, "trigger": _trigger,
        "call": _call, "sleep": _sleep, "wait": _wait,
    }

    def _wait_journaled(self, agent: Agent, inv: Invocation, seq: int, until: float | None) -> None:
        """Journal a wait as asked (no result yet), and stop the worker if it
        waits past suspend_after."""
        assert inv.journal is not None
        kind, req = inv.journal[seq][0], inv.journal[seq][1]
        self._store.put_effect(agent.name, inv.key, seq, kind, req, self._now(), until=until)

        def told(err: GolemError | None) -> None:
            if err is not None:
                self._unsaved(agent, inv)

        self._store.on_commit(told)
        self._arm_suspend(agent, inv)
        agent.waiting_started()

    def _arm_suspend(self, agent: Agent, inv: Invocation) -> None:
        def due() -> None:
            if inv.waiting_for is not None:
                agent.suspend_waiting(inv)

        self.waits.suspend(agent.name, self.sup.config.suspend_after, due)

    def rearm(self, agent: Agent, inv: Invocation, until: float | None) -> None:
        """At recovery: register the wait the journal of `inv` ends on, if any."""
        journal = inv.journal
        if not journal or journal[-1][2] is not None or journal[-1][0] not in WAITS:
            return
        seq = len(journal) - 1
        kind, req = journal[seq][0], _unpack(journal[seq][1])
        self._rearm(agent, inv, seq, kind, req, until)

    def _rearm(self, agent: Agent, inv: Invocation, seq: int, kind: str, request: dict[str, Any],
               until: float | None) -> None:
        """Register the wait of effect `seq` (journaled as asked already)."""
        if kind == "call":
            target, problem = self._target(agent, request)
            if target is None:
                self._wait_end(agent, inv, seq, problem)
                return
            key = derived_key(agent.name, inv.key, seq)
            inv.waiting_for = waiting_for(kind, request, until, target, key)
            self.waits.call(agent.name, inv, target)
            self._attach(agent, inv, seq, target, request, key)
        elif kind == "sleep":
            inv.waiting_for = waiting_for(kind, request, until)
            self._arm_timer(agent, inv, seq, until or self._now(), value_res(None))
        elif kind == "wait":
            pid = str(request.get("promise"))
            row = self._store.get_promise(pid)
            inv.waiting_for = waiting_for(kind, request, until)
            if row is None:
                self._wait_end(agent, inv, seq, error_res(Code.NOT_FOUND.value, f"no promise {pid!r}"))
                return
            if row["completed_at"] is not None:
                self._wait_end(agent, inv, seq, pack({"value": _unpack(row["value"])}))
                return
            self.waits.promise(pid, (agent, inv, seq))
            if until is not None:
                self._arm_timer(agent, inv, seq, until, error_res(
                    Code.TIMEOUT.value, f"promise {pid} was not completed in time"))

    def _attach(self, agent: Agent, inv: Invocation, seq: int, target: str, request: dict[str, Any],
                key: str) -> None:
        """Wait on the callee's invocation under the derived key: a re-run, or
        a restart, attaches to the same one, or gets its stored outcome."""

        submitting = True

        def done(reply: dict[str, Any] | None, err: GolemError | None) -> None:
            if err is not None and self._transient(err):
                return  # the daemon is stopping: the journal keeps the wait for the restart
            if err is not None and err.code == Code.INTERRUPTED:
                callee = self.sup.agents.get(target)
                if callee is not None and not callee.engine.deleted and self.waits.calling(agent.name, inv):
                    # Interrupted, it runs again on resume: wait for that run.
                    asyncio.get_running_loop().call_soon(self._attach, agent, inv, seq, target, request, key)
                    return
            if err is not None:
                res = error_res(str(err.code), err.message, err.details)
            else:
                res = value_res((reply or {}).get("result"))
            # An outcome told after submit returned is the callee's, told from
            # the commit that made it durable under the derived key: a re-run
            # would get the same from the callee's row, so the caller may see
            # it before its own copy commits.
            self._wait_end(agent, inv, seq, res, durable=not submitting and (err is None or err.code in OUTCOMES))

        self.sup.submit(invoke_request(target, request, key, "await", agent.name, inv, seq,
                                       self.sup.ctx.observer is not None), None, done)
        submitting = False

    def _arm_timer(self, agent: Agent, inv: Invocation, seq: int, until: float, res: bytes) -> None:
        self.waits.timer(agent.name, inv, until - self._now(), lambda: self._wait_end(agent, inv, seq, res))

    def _wait_end(self, agent: Agent, inv: Invocation, seq: int, res: bytes, durable: bool = False) -> None:
        """The wait of effect `seq` is over with `res`: journal it, then go on
        once that commits; at once when `res` is durable already elsewhere."""
        journal = inv.journal
        self.waits.forget(agent.name, inv)
        if journal is None or seq >= len(journal) or journal[seq][2] is not None:
            return  # ended already
        if agent.engine.deleted or inv.status not in ACTIVE:
            return  # nobody to tell: the caller's invocation is gone (timed out, deleted)
        self._store.finish_effect(agent.name, inv.key, seq, res, self._now())
        journal[seq][2] = res
        inv.waiting_for = None
        if durable:
            self._store.commit_soon()
            self._journaled(agent, inv, seq, res)
        else:
            self._answer_at_commit(agent, inv, seq, res)

    # -- answers ------------------------------------------------------------------

    def _answer_at_commit(self, agent: Agent, inv: Invocation, seq: int, res: bytes) -> None:
        def told(err: GolemError | None) -> None:
            if err is not None:
                self._unsaved(agent, inv)
            else:
                self._journaled(agent, inv, seq, res)

        self._store.on_commit(told)

    def _journaled(self, agent: Agent, inv: Invocation, seq: int, res: bytes) -> None:
        if self.sup.ctx.observer is not None:
            effect_done(self.sup.ctx.observer, agent.name, agent.engine.type_name, inv, seq, res, self._now())
        faults.crash_point("effect_done")
        if faults.kill_worker_point("effect_done") and agent.worker is not None:
            agent.worker.kill()  # journaled, not told: the re-run replays it
            return
        self._tell_listeners(inv, {"type": "effect_done", "seq": seq, "detail": describe_result(_unpack(res))})
        self._tell_worker(agent, inv, seq, res)

    def _tell_worker(self, agent: Agent, inv: Invocation, seq: int, res: bytes) -> None:
        """Give the result to the worker blocked on it, or run `inv` again."""
        if agent.engine.deleted or inv.status not in ACTIVE:
            return
        worker = agent.worker
        if inv is agent.current and inv.live_seq == seq and worker is not None and worker.alive:
            inv.live_seq = None
            worker.effect_result(inv.call_id, seq, res)
        else:
            agent.wait_ended(inv)

    def _tell_listeners(self, inv: Invocation, event: dict[str, Any]) -> None:
        for listener in inv.listeners:
            listener({**event, "idempotency_key": inv.key})

    def _unsaved(self, agent: Agent, inv: Invocation) -> None:
        """An effect's journal write failed: what the journal holds is the
        truth. The invocation's worker is stopped and it runs again from the
        last saved state, replaying what was journaled."""
        log.error("%s: an effect of %s could not be journaled; it runs again", agent.name, inv.key)
        self.waits.forget(agent.name, inv)
        if agent.engine.deleted or inv.status not in ACTIVE:
            return
        try:
            rows = self._store.load_effects(agent.name, inv.key)
        except GolemError:
            rows = []
        inv.journal = [[r["kind"], bytes(r["request"]), r["result"]] for r in rows]
        inv.waiting_for = None
        inv.live_seq = None
        agent.rerun(inv)

    # -- promises -----------------------------------------------------------------

    def complete(self, pid: str, value: Any) -> None:
        """Complete a promise (written, not yet committed: the caller awaits
        the commit). Raises NOT_FOUND or ALREADY_COMPLETED."""
        row = self._store.get_promise(pid)
        if row is None:
            raise GolemError(Code.NOT_FOUND, f"no promise {pid!r}")
        if row["completed_at"] is not None:
            raise GolemError(Code.ALREADY_COMPLETED, f"promise {pid} was completed already")
        try:
            packed = pack(value)
        except Exception as exc:
            raise GolemError(Code.BAD_REQUEST, f"a promise's value must be a msgpack value: {exc}") from None
        self._store.complete_promise(pid, packed, self._now())
        self.promise_completed(pid, value)

    def promise_completed(self, pid: str, value: Any) -> None:  # here, or on another node (a cluster)
        for agent, inv, seq in self.waits.take_promise(pid):
            self._wait_end(agent, inv, seq, pack({"value": value}))

    def promise_info(self, row: dict[str, Any]) -> dict[str, Any]:
        now = self._now()
        out = {"promise_id": row["id"], "agent_id": row["agent_id"], "idempotency_key": row["key"],
               "created_at": row["created_at"], "age_seconds": max(0.0, now - row["created_at"]),
               "completed": row["completed_at"] is not None, "completed_at": row["completed_at"]}
        if row["completed_at"] is not None:
            out["value"] = _unpack(row["value"])
        return out

    # -- agents as a whole ----------------------------------------------------------

    def forget_agent(self, agent: Agent) -> None:
        """The agent is deleted: its waits go (what it called runs on), and
        so do its promises: another agent waiting on one is told NOT_FOUND."""
        self.waits.forget_agent(agent.name, agent)
        for row in self._store.list_promises(agent.name):
            for other, inv, seq in self.waits.take_promise(row["id"]):
                self._wait_end(other, inv, seq, error_res(
                    Code.NOT_FOUND.value, f"promise {row['id']} went with its agent {agent.name}, deleted"))

    def _target(self, agent: Agent, request: dict[str, Any]) -> tuple[str | None, bytes]:
        """The callee's canonical ID, in the caller's environment unless it
        names one; or (None, the error to journal)."""
        text = request.get("agent")
        if not isinstance(text, str):
            return None, error_res(Code.INVALID_AGENT_ID.value, "remote() takes an agent ID string")
        head = text.split("(", 1)[0]
        if "/" not in head and agent.id.env != DEFAULT_ENV:
            text = f"{agent.id.env}/{text.strip()}"
        try:
            return self.sup.parse_id(text).canonical, b""
        except GolemError as err:
            return None, error_res(str(err.code), err.message)

    @staticmethod
    def _transient(err: GolemError) -> bool:
        return err.code == Code.SHUTTING_DOWN
