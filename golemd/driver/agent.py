"""One agent as the daemon runs it: its engine (golemd.engine.agent, the
logic) driven against a real worker process, real timers and the store.

Every call into the engine is followed by `_apply`, which carries out the
effects it asked for: spawn a worker, send it a call, stop it, arm a timer.
What the world does comes back as engine events: the worker built or not,
its reply (handled from inside the read of it, so a warm call's outcome is
recorded and the next call sent in the same loop round), its death (reported
once it is reaped, with its exit status), a timer firing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from golemd import faults
from golemd.engine import control
from golemd.engine.agent import AgentEngine
from golemd.engine.effects import Arm, Idle, Send, Spawn, Stop, Timer, WorkerState
from golemd.engine.revert import RevertPlan
from golemd.host.agentlog import AgentOutput, log_path
from golemd.host.workers import TemplateError, Worker, WorkerDied, describe_exit
from golemd.model.agent_id import AgentId
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation
from golemd.model.states import AgentStatus
from golemd.wire.worker import DROPPED

if TYPE_CHECKING:
    from golemd.config import Config
    from golemd.driver.durable import Durable
    from golemd.engine.context import EngineContext
    from golemd.storage.base import Store

log = logging.getLogger("golemd.agent")


class AgentHost(Protocol):
    """What an agent needs of the daemon's agents as a whole (golemd.driver.supervisor)."""

    config: Config
    ctx: EngineContext
    store: Store
    logs_dir: str
    durable: Durable

    async def spawn_worker(self, agent: Agent, init: dict[str, Any]) -> Worker: ...

    def touch(self, agent: Agent) -> None: ...

    def worker_gone(self, agent: Agent, worker: Worker) -> None: ...

    def trim_soon(self) -> None: ...


class Agent:
    def __init__(self, sup: AgentHost, aid: AgentId, type_info: dict[str, Any] | None,
                 row: dict[str, Any] | None = None, env_vars: dict[str, str] | None = None):
        self.sup = sup
        self.id = aid
        self.name = aid.canonical
        self._type_info = type_info
        self.engine = AgentEngine(sup.ctx, sup.store, self.name, aid.type,
                                  bool(type_info and type_info["durable"]), row)
        self.engine.on_effects = self._apply
        if env_vars is None and row is not None and row.get("env_vars"):
            import msgpack

            env_vars = msgpack.unpackb(row["env_vars"], raw=False)
        self.env_vars: dict[str, str] = env_vars or {}  # its own environment variables (agent new --env)
        self._built: list[asyncio.Future[None]] = []  # told when a worker's agent is built, or why not
        self.creation_unsaved = False  # created, its row not committed yet (golemd.driver.supervisor)
        self.worker: Worker | None = None
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._settled: list[asyncio.Future[None]] = []  # told when nothing runs any more
        config = sup.config
        self.output = AgentOutput(log_path(sup.logs_dir, self.name), config.log_buffer_lines,
                                  config.log_buffer_bytes, config.agent_log_bytes)

    # -- facts -------------------------------------------------------------

    @property
    def type_info(self) -> dict[str, Any] | None:
        return self._type_info

    @type_info.setter
    def type_info(self, info: dict[str, Any] | None) -> None:
        self._type_info = info
        self.engine.durable = bool(info and info["durable"])

    @property
    def status(self) -> AgentStatus:
        return self.engine.status

    @property
    def current(self) -> Invocation | None:
        return self.engine.current

    @property
    def busy(self) -> bool:
        return self.engine.current is not None

    def metadata(self) -> dict[str, Any]:
        from golemd.driver.agent_info import metadata

        return metadata(self)

    def invocations(self) -> list[dict[str, Any]]:
        return self.engine.invocations()

    @property
    def waiting(self) -> bool:
        """Its invocation waits on a durable effect: nothing of it runs, and
        its journal holds where it is, so a stop costs it nothing."""
        cur = self.engine.current
        return cur is not None and cur.waiting_for is not None

    def warm_up(self) -> asyncio.Future[None]:
        """Start a worker now, with nothing to run (agent new): resolved once
        its agent is built, or failed with the GolemError it could not be
        built with (AGENT_FAILED)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.engine.failed_error is not None:
            fut.set_exception(GolemError.from_wire(self.engine.failed_error))
        elif self.engine.warm_up() or self.engine.worker is WorkerState.STARTING:
            self._built.append(fut)
            self._apply()
        else:
            fut.set_result(None)  # built already, or running something
        return fut

    def _tell_built(self, err: GolemError | None) -> None:
        waiting, self._built = self._built, []
        for fut in waiting:
            if fut.done():
                continue
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)

    def settled(self) -> asyncio.Future[None]:
        """Resolved once no invocation runs (drain and shutdown wait on it);
        one waiting on a durable effect does not count as running."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.busy and not self.waiting:
            self._settled.append(fut)
        else:
            fut.set_result(None)
        return fut

    async def recovered(self, timeout: float) -> None:
        """After a recover: until its new worker is built, or none is coming (at most `timeout`)."""
        if self.engine.worker in (WorkerState.STARTING, WorkerState.DYING):
            self._built.append(fut := asyncio.get_running_loop().create_future())
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
            await asyncio.wait([fut], timeout=timeout)

    # -- operations: the engine's, then their effects ------------------------

    def enqueue(self, inv: Invocation) -> None:
        self.engine.enqueue(inv)
        self._apply()

    def journaled(self, inv: Invocation) -> None:
        self.engine.journaled(inv)
        self._apply()

    def start_early(self, inv: Invocation) -> None:
        self.engine.start_early(inv)
        self._apply()

    def withdraw(self, inv: Invocation, err: GolemError) -> None:
        control.withdraw(self.engine, inv, err)
        self._apply()

    def cancel(self, key: str) -> None:
        """Cancel a pending invocation. It is canceled, and its callers told,
        once the cancel commits (its caller awaits that commit); if the commit
        fails it is back in its place in the queue, and may start then."""
        eng = self.engine
        inv = eng.queue.active.get(key)
        # Not sent ahead, or it started meanwhile (TOO_LATE): its reply, or the
        # worker's `dropped`, settles the drop; so does `dropped` if the journal fails.
        dropped = inv is not None and inv in eng.queue.ahead and self._drop(inv)
        try:
            control.cancel(eng, key)
        finally:
            self._apply()

        def committed(_err: GolemError | None) -> None:
            if dropped and inv is not None:
                # Settled only now (or by the worker's `dropped`, if that came
                # first), so that those after it were not sent again meanwhile:
                # if the cancel failed, `inv` goes again before them.
                eng.drop_settled(inv)
            self._apply()

        self.sup.store.on_commit(committed)

    def _drop(self, inv: Invocation) -> bool:
        """Ask the worker to drop `inv`, sent ahead, and those after it; True
        if the drop is sure to win (False: it started, or the worker has
        answered the drop already and it is back in the queue). The worker starts a call only after
        replying to the one before and looks for drops after each reply: so if
        that reply is not in its socket once the drop is written, the drop
        wins. What is there is read now."""
        worker = self.worker
        if worker is None:
            return False
        self.engine.dropping(inv)  # nothing more goes ahead until it is settled
        worker.drop(inv.call_id)
        try:
            worker.poll()
        finally:
            self.engine.polled()
        return inv in self.engine.queue.ahead

    def unsend(self) -> None:
        """Take back the calls sent ahead, unstarted (drain, reload): as for a
        cancel, the worker drops those it has not started once the drop is
        written, and what it replied before is read now."""
        eng = self.engine
        first = eng.to_unsend()
        if first is not None and self._drop(first):
            eng.unsend()
            eng.drop_settled(first)
        self._apply()

    def revert(self, plan: RevertPlan) -> None:
        try:
            control.revert(self.engine, plan)
        finally:
            self._apply()

    def interrupt(self, recover: bool) -> None:
        control.interrupt(self.engine, recover)
        self._apply()

    def resume(self) -> None:
        control.resume(self.engine)
        self._apply()

    def delete(self) -> None:
        control.delete(self.engine)
        self._apply()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.output.end("deleted")
        self.output.file.remove()

    def shutdown(self) -> None:
        control.shutdown(self.engine)
        self._apply()

    def suspend(self) -> bool:
        suspended = self.engine.suspend()
        self._apply()
        return suspended

    def fail_all_pending(self, err: GolemError) -> None:
        self.engine.fail_all_pending(err)
        self._apply()

    # -- durable execution (golemd.driver.durable) -----------------------------

    def wait_ended(self, inv: Invocation) -> None:
        self.engine.wait_ended(inv)
        self._apply()

    def suspend_waiting(self, inv: Invocation) -> None:
        self.engine.suspend_waiting(inv)
        self._apply()

    def waiting_started(self) -> None:
        """Its invocation waits now: a drain need not wait for it."""
        waiting, self._settled = self._settled, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)

    def rerun(self, inv: Invocation) -> None:
        self.engine.rerun(inv)
        self._apply()

    def _on_effect(self, msg: dict[str, Any]) -> None:
        try:
            self.sup.durable.on_effect(self, msg)
        except ValueError:
            raise  # the worker broke the protocol: its channel is closed
        except Exception as exc:
            log.exception("%s: handling an effect failed", self.name)
            raise ValueError(f"golemd failed handling an effect: {exc!r}") from exc

    # -- effects -------------------------------------------------------------

    def _apply(self) -> None:
        eng = self.engine
        deferred = False
        while eng.out:
            for eff in eng.take():
                kind = type(eff)
                if kind is Send:
                    # The call to run now is written at once; calls sent ahead
                    # go in one write, after the effects.
                    ahead = eff.ahead  # type: ignore[union-attr]
                    self._send(eff.inv, defer=ahead)  # type: ignore[union-attr]
                    deferred = deferred or ahead
                elif kind is Arm:
                    self._arm(eff)  # type: ignore[arg-type]
                elif kind is Idle:
                    self._idle()
                elif kind is Stop:
                    self._stop(eff.now)  # type: ignore[union-attr]
                elif kind is Spawn:
                    asyncio.create_task(self._start_worker(eff.snapshot),  # type: ignore[union-attr]
                                        name=f"start {self.name}")
        if deferred and self.worker is not None:
            self.worker.flush_soon()

    def _send(self, inv: Invocation, defer: bool = False) -> None:
        worker = self.worker
        assert worker is not None
        self.sup.touch(self)
        eng = self.engine

        def then(reply: Any, died: WorkerDied | None) -> None:
            if died is not None:
                return  # its death is reported once it is reaped (_worker_died)
            if reply.get("op") == DROPPED:
                if inv.call_id == reply.get("id"):  # not a copy sent again since
                    eng.dropped(inv)
                    self._apply()
                return
            if eng.listened:
                worker.drain_output()  # its lines reach streaming callers before its result
            store = self.sup.store
            # The next call goes to the worker before this outcome's commit and
            # reply: the worker runs it meanwhile.
            store.hold()
            try:
                try:
                    eng.replied(inv, reply)
                except Exception as exc:
                    self._internal_error(inv, exc)
                self._apply()
            finally:
                store.release()

        inv.live_seq = None
        faults.crash_point("start")
        if faults.kill_worker_point("start"):
            worker.kill()  # before it reads the call: a pending SIGKILL lets it run no more code
        inv.call_id = worker.call_then(inv.method, inv.args, then, defer=defer, journal=inv.journal)

    def _internal_error(self, inv: Invocation, exc: Exception) -> None:
        """Our bug, not the agent's: fail the invocation rather than leave it running."""
        log.exception("%s: internal error running %s", self.name, inv.key)
        self.engine.internal_error(inv, GolemError(Code.INTERNAL, f"golemd failed: {exc!r}"))

    def _arm(self, eff: Arm) -> None:
        handle = self._timers.pop(eff.timer, None)
        if handle is not None:
            handle.cancel()
        if eff.delay is not None:
            self._timers[eff.timer] = asyncio.get_running_loop().call_later(eff.delay, self._fire, eff.timer)

    def _fire(self, timer: Timer) -> None:
        self._timers.pop(timer, None)
        self.engine.timer_fired(timer)
        self._apply()

    def _idle(self) -> None:
        self.sup.trim_soon()  # a burst may have left more workers than the budget
        waiting, self._settled = self._settled, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)

    def _stop(self, now: bool) -> None:
        worker = self.worker
        if worker is None:
            return  # being spawned: _start_worker stops it when it arrives
        if now:
            worker.kill()
        else:
            # SIGTERM, then SIGKILL after the grace.
            asyncio.ensure_future(worker.stop(self.sup.config.stop_grace))

    # -- the worker's life ---------------------------------------------------

    async def _start_worker(self, snapshot: bytes | None) -> None:
        eng = self.engine
        try:
            init: dict[str, Any] = {"op": "init", "args": list(self.id.args), "snapshot": snapshot,
                                    "spin_us": self.sup.config.spin_us}
            if self.env_vars:
                init["env"] = self.env_vars
            worker = await self.sup.spawn_worker(self, init)
        except Exception as exc:
            if not isinstance(exc, TemplateError):
                log.exception("%s: starting a worker failed", self.name)
            eng.spawn_failed(str(exc))
            self._apply()
            self._tell_built(GolemError(Code.AGENT_FAILED, f"no process could be started: {exc}"))
            return
        self.worker = worker
        worker.on_dead = self._worker_died
        worker.on_effect = self._on_effect
        eng.worker_spawned()
        if not worker.alive:
            self._worker_died(worker)  # before it could be told
        elif eng.worker is WorkerState.DYING:
            worker.kill()  # stopped while it was being spawned
        assert worker.initialized is not None
        try:
            reply = await worker.initialized
        except WorkerDied as died:
            self._tell_built(GolemError(Code.AGENT_DIED, f"its process died while starting: {died}"))
            return  # its death is reported once it is reaped
        if reply.get("ok"):
            eng.worker_ready(f"pid {worker.pid}" if snapshot is not None else None)
        else:
            eng.constructor_failed(reply["error"])
        self._apply()
        failed = eng.failed_error
        self._tell_built(GolemError.from_wire(failed) if failed is not None else None)

    def _worker_died(self, worker: Worker) -> None:
        """Its control channel closed: reap it, then tell the engine how it died."""
        if self.worker is not worker:
            return
        self.engine.worker_lost()
        asyncio.ensure_future(self._reap(worker))

    async def _reap(self, worker: Worker) -> None:
        worker.kill()
        code = await worker.wait()
        if self.worker is not worker:
            return
        self.worker = None
        if self.engine.current is not None:
            self.engine.current.live_seq = None  # no worker is blocked on its effect any more
        if not self.engine.deleted:
            self.output.file.close()  # reopened by the next line; suspended agents hold no fd
        self.sup.worker_gone(self, worker)
        why = describe_exit(code) if code is not None else (worker.death_reason or "it died")
        self.engine.worker_exited(why, worker.protocol_error)
        self._apply()
        if self.engine.worker is WorkerState.ABSENT:
            self._tell_built(None)  # none comes (held, failed): a recover waits no more

    def on_output(self, stream: str, line: str, cut: bool = False) -> None:
        """A line of the worker's output; `cut`: a piece of a line over 64 KiB."""
        if cut:
            self.output.cut_lines += 1
        cur = self.engine.current
        entry = {"type": "output", "stream": stream, "line": line, "ts": self.sup.ctx.clock(),
                 "idempotency_key": cur.key if cur else None}
        self.output.add(entry)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s: %s", self.name, stream, line)
        if cur is not None:
            for listener in cur.listeners:
                listener(entry)
