"""One agent's logic, without I/O: its queue, the invocation it runs, its
worker as a state, retries and backoff, suspension, scheduled calls, status.

Events come in as method calls (an invocation accepted or journaled, the
worker built, replied, lost or reaped, a timer fired); effects go out in
`out` (golemd.engine.effects), taken by the driver after each call, which
reports back what happened. Journal writes go to the Store given (the engine's
one seam to durability, golemd.engine.journal) and time comes from the
context's clock, so a test can drive every edge without a process.

Every outcome is written and committed before any caller hears of it
(`_finish` answers from the commit's callback). The control operations
(cancel, interrupt, resume, delete: golemd.engine.control) never wait: they
change the facts, journal them, stop the worker if they must and leave
`stop_reason` to tell the death that follows from a crash.
"""

from __future__ import annotations

from typing import Any

from golemd.engine.context import EngineContext
from golemd.engine.effects import (
    IDLE,
    STOP_NOW,
    STOP_POLITELY,
    Arm,
    Discard,
    Effect,
    Send,
    Spawn,
    StopReason,
    Timer,
    WorkerState,
)
from golemd.engine.journal import Journal
from golemd.engine.queue import PendingQueue
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation, resolve
from golemd.model.states import AgentStatus, InvocationStatus, derive_agent_status
from golemd.wire.codec import pack

S = InvocationStatus
W = WorkerState


class AgentEngine:
    def __init__(self, ctx: EngineContext, store: Journal, name: str, type_name: str,
                 durable: bool, row: dict[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.name = name
        self.type_name = type_name
        self.durable = durable
        now = ctx.clock()
        row = row or {}
        self.created_at: float = row.get("created_at", now)
        self.last_active_at: float = row.get("last_active_at", now)
        self.completed_count: int = row.get("completed_count", 0)
        self.failed_count: int = row.get("failed_count", 0)
        self.retry_count: int = row.get("retry_count", 0)
        self.last_error: str | None = row.get("last_error")
        self.interrupted: bool = bool(row.get("interrupted", 0))
        self.failed_error: dict[str, Any] | None = None
        self.snapshot: bytes | None = row.get("snapshot")
        self._snapshot_dirty = False  # changed since the row was last written
        self._write_row_now = self._write_row  # bound once: asked for after every invocation
        self.next_seq = 0  # recovery sets it from the journal
        self.queue = PendingQueue()
        self.current: Invocation | None = None
        self.deleted = False
        self.retrying = False
        self.stop_reason: StopReason | None = None
        self.worker = W.ABSENT
        self.worker_generation = 0
        self._worker_lost = False  # its control channel closed (it is dead, not yet reaped)
        self._worker_stopped = False  # we stopped it: its death is no crash
        self.start_failures = 0  # consecutive worker deaths before the agent was built
        self.listened = 0  # how many queued invocations have streaming callers
        self._armed: set[Timer] = set()
        self.out: list[Effect] = []

    def take(self) -> list[Effect]:
        """The effects asked for since the last take, oldest first."""
        out, self.out = self.out, []
        return out

    # -- facts -------------------------------------------------------------

    @property
    def status(self) -> AgentStatus:
        return derive_agent_status(
            failed=self.failed_error is not None, interrupted=self.interrupted,
            retrying=self.retrying, running=self.current is not None,
            worker_alive=self.worker_alive)

    @property
    def worker_alive(self) -> bool:
        w = self.worker
        return w is W.READY or w is W.STARTING or (w is W.DYING and not self._worker_lost)

    @property
    def pending_count(self) -> int:
        return len(self.queue)

    @property
    def busy(self) -> bool:
        return self.current is not None

    def invocations(self) -> list[dict[str, Any]]:
        """The running invocation, then the queue, then the scheduled ones."""
        items = [self.current.public()] if self.current is not None else []
        items += [inv.public() for inv in self.queue.waiting()]
        return items

    def event(self, kind: str, inv: Invocation | None = None, detail: str | None = None) -> None:
        if not self.deleted:
            self.store.event(self.name, self.ctx.clock(), kind, inv.key if inv else None,
                             inv.method if inv else None, detail)

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def _warm(self) -> bool:
        """Whether a call can go to the worker now: built, on the current code."""
        return self.worker is W.READY and self.worker_generation == self.ctx.generation

    def _may_run(self) -> bool:
        head = self.queue.head()
        return (head is not None and head.journaled and not self.interrupted and not self.deleted
                and self.failed_error is None and not self.ctx.draining)

    def ready_warm(self) -> bool:
        """Whether a call enqueued now would be sent to the worker at once."""
        return (self.current is None and not self.queue.fifo and not self.interrupted
                and not self.deleted and self.failed_error is None and not self.ctx.draining
                and self._warm())

    def _arm(self, timer: Timer, delay: float | None) -> None:
        if delay is None:
            if timer in self._armed:
                self._armed.discard(timer)
                self.out.append(Arm(timer, None))
            return
        self._armed.add(timer)
        self.out.append(Arm(timer, delay))

    # -- the queue ---------------------------------------------------------

    def enqueue(self, inv: Invocation) -> None:
        """Queue an invocation; it starts once journaled (`journaled`)."""
        self.queue.add(inv)
        if inv.status == S.SCHEDULED:
            self.arm_schedule()
        elif inv.journaled:
            self.kick()

    def journaled(self, inv: Invocation) -> None:
        """Its enqueue is committed: it may start."""
        inv.journaled = True
        self.kick()

    def start_early(self, inv: Invocation) -> None:
        """Send an awaited call before its enqueue commits (ready_warm() holds);
        `withdraw` stops it if that commit fails."""
        self.queue.active[inv.key] = inv
        self._begin(inv)
        self._send(inv)

    def arm_schedule(self) -> None:
        due = self.queue.next_due()
        if due is None or self.deleted:
            self._arm(Timer.SCHEDULE, None)
        else:
            self._arm(Timer.SCHEDULE, max(0.0, due - self.ctx.clock()))

    def _release_due(self) -> None:
        for inv in self.queue.take_due(self.ctx.clock()):
            inv.move(S.PENDING)
            # A released invocation joins the FIFO now, so it takes a new
            # place in the order that recovery will replay.
            inv.seq = self.take_seq()
            self.store.update_invocation(self.name, inv.key, status=inv.status.value, seq=inv.seq)
            self.queue.fifo.append(inv)
        self.store.commit_soon()
        self.arm_schedule()
        self.kick()

    def kick(self) -> None:
        """Start the head of the queue if nothing runs."""
        if self.current is not None or not self._may_run():
            return
        inv = self.queue.fifo.popleft()
        self._begin(inv)
        if self._warm():
            self._send(inv)
        else:
            self._bring_up()

    def _next(self) -> None:
        self.kick()
        if self.current is None:
            self._idle()

    def _idle(self) -> None:
        """Nothing runs and nothing more can start now."""
        if self.worker is W.READY and self.worker_generation != self.ctx.generation:
            self.suspend()  # it ran on code a reload replaced: the next call starts on the new
        self.arm_idle()
        self.out.append(IDLE)

    # -- running one invocation --------------------------------------------

    def _tell_positions(self, started: Invocation) -> None:
        """Tell streaming callers where they stand: the one starting, then those waiting."""
        for listener in started.listeners:
            listener({"type": "started"})
        for ahead, waiting in enumerate(self.queue.fifo, 1):
            for listener in waiting.listeners:
                listener({"type": "queued", "ahead": ahead})

    def _begin(self, inv: Invocation) -> None:
        inv.move(S.RUNNING)
        self.current = inv
        if self.listened:
            self._tell_positions(inv)
        # Not journaled: recovery treats a running invocation as pending, and
        # its started_at is written with its outcome.
        inv.started_at = self.last_active_at = self.ctx.clock()

    def _send(self, inv: Invocation) -> None:
        self.out.append(Send(inv))
        if inv.timeout is not None:
            self._arm(Timer.TIMEOUT, inv.timeout)

    def _bring_up(self) -> None:
        """Get a worker for the current invocation: it is sent once one is ready."""
        if self.worker is W.ABSENT:
            self.worker = W.STARTING
            self.worker_generation = self.ctx.generation
            self._worker_lost = self._worker_stopped = False
            self.out.append(Spawn(self.snapshot if self.durable else None))
        elif self.worker is W.READY:
            self.stop_worker(now=True)  # on replaced code: the next one starts on the new
        # STARTING: worker_ready sends it; DYING: worker_exited starts the next

    def stop_worker(self, now: bool) -> None:
        if self.worker is W.ABSENT:
            return
        if self.worker is W.DYING and not now:
            return  # being stopped already
        self.worker = W.DYING
        self._worker_stopped = True
        self.out.append(STOP_NOW if now else STOP_POLITELY)

    def replied(self, inv: Invocation, reply: dict[str, Any]) -> None:
        """The worker's reply to `inv`."""
        if inv is not self.current:
            return
        self._arm(Timer.TIMEOUT, None)
        if inv.discard is not None:
            self.stop_worker(now=True)  # its death decides (worker_exited)
            return
        self._complete(inv, reply)
        self._next()

    def internal_error(self, inv: Invocation, err: GolemError) -> None:
        """Our bug, not the agent's: fail the invocation rather than leave it running."""
        if inv.status == S.RUNNING:
            self._finish(inv, S.FAILED, error=err)
        self._next()

    def _complete(self, inv: Invocation, reply: dict[str, Any]) -> None:
        self.ctx.crash_point("result")
        if reply.get("ok"):
            changed = reply.get("snapshot") is not None
            if changed:
                self.snapshot = reply["snapshot"]
            self._finish(inv, S.COMPLETED, result=reply.get("result"), snapshot_changed=changed)
            return
        err = reply.get("error") or {}
        code = reply.get("code", Code.INVOCATION_FAILED.value)
        message = f"{err.get('type', 'Exception')}: {err.get('message', '')}"
        if code != Code.INVOCATION_FAILED.value:
            message = err.get("message", message)
        self._finish(inv, S.FAILED, error=GolemError(code, message, details=err))

    def _finish(self, inv: Invocation, status: InvocationStatus, result: Any = None,
                error: GolemError | None = None, snapshot_changed: bool = False) -> None:
        now = self.ctx.clock()
        inv.move(status)
        if self.current is inv:
            self.current = None
        self.queue.active.pop(inv.key, None)
        self.last_active_at = now
        if status == S.COMPLETED:
            self.completed_count += 1
            outcome: dict[str, Any] = {"result": result}
        else:
            assert error is not None
            self.failed_count += 1
            self.last_error = str(error)
            outcome = {"error": error.to_wire()}
        waiters = list(inv.waiters)
        inv.waiters.clear()
        store = self.store
        try:
            if not self.deleted:
                store.finish_invocation(inv.rowid, status.value, pack(outcome), now, inv.started_at)
                if snapshot_changed and self.durable:
                    self._snapshot_dirty = True
                store.write_before_commit(self.name, self._write_row_now)
                # Keep stored outcomes bounded: prune now and then, not on every call.
                if self.completed_count % 1000 == 0:
                    policy = self.ctx.policy
                    store.prune(self.name, policy.retention_count, now - policy.retention_seconds)
        except GolemError as err:
            # The outcome could not be journaled: say so rather than report it.
            self.drop_unsaved_state()
            resolve(waiters, error=err)
            return
        crash_point = self.ctx.crash_point

        def deliver(failed: GolemError | None) -> None:
            crash_point("finished")
            if failed is not None:
                self.drop_unsaved_state()
                resolve(waiters, error=failed)
            elif error is not None:
                resolve(waiters, error=error)
            else:
                resolve(waiters, value=result)

        store.on_commit(deliver)

    def _write_row(self) -> None:
        """The agent's row as of now: written once per group commit, before it."""
        if self.deleted:
            return
        cols: dict[str, Any] = {"last_active_at": self.last_active_at, "completed_count": self.completed_count,
                                "failed_count": self.failed_count, "last_error": self.last_error}
        if self._snapshot_dirty:
            cols["snapshot"] = self.snapshot
            self._snapshot_dirty = False
        self.store.update_agent(self.name, **cols)

    def drop_unsaved_state(self) -> None:
        """An outcome could not be committed, so the worker holds a state the
        store does not: stop it, and go on from the last saved state, as after
        a crash. A call it was running meanwhile (the next one goes out before
        the commit) runs again from there."""
        if self.deleted or not self.durable:
            return
        self.snapshot = self.store.saved_snapshot(self.name)
        self._snapshot_dirty = False
        if self.worker is W.READY or self.worker is W.STARTING:
            if self.current is not None and self.current.discard is None:
                self.current.discard = Discard.UNSAVED
            self.stop_worker(now=True)

    def fail_agent(self, error: dict[str, Any], inv: Invocation | None, what: str | None = None) -> None:
        """The constructor raised, the state cannot be loaded, or the process
        dies whenever it starts: the agent is Failed until deleted."""
        if what is not None:
            message = f"{what}: {error.get('message')}"
        else:
            message = f"the constructor of {self.type_name} raised {error.get('type')}: {error.get('message')}"
        self.failed_error = {"code": Code.AGENT_FAILED.value, "message": message, "details": error}
        self.event("constructor_failed", inv, message)
        if not self.deleted:
            # Failed survives a restart, as every status does; delete clears it.
            self.store.update_agent(self.name, failed_error=pack(self.failed_error))
        err = GolemError(Code.AGENT_FAILED, message, details=error)
        if inv is not None:
            self._finish(inv, S.FAILED, error=err)
        self.fail_all_pending(err)

    def fail_all_pending(self, err: GolemError) -> None:
        pending = self.queue.take_all()
        self.arm_schedule()
        for inv in pending:
            self._finish(inv, S.FAILED, error=err)

    # -- the worker's life -------------------------------------------------

    def worker_spawned(self) -> None:
        """Its process exists; its agent is being built."""
        self.start_failures += 1  # until the agent is built: a death now is a crash loop

    def spawn_failed(self, why: str) -> None:
        """No process could be started (the template is gone)."""
        self.worker = W.ABSENT
        if self.current is not None:
            self._after_death(self.current, why, protocol_error=False)
        else:
            self._next()

    def worker_ready(self, resumed: str | None = None) -> None:
        """Its agent is built; `resumed`: said of a start from a snapshot."""
        self.start_failures = 0
        if self.worker is not W.STARTING:
            return  # stopped meanwhile: its death comes next
        self.worker = W.READY
        if resumed is not None:
            self.event("resumed_from_snapshot", detail=resumed)
        inv = self.current
        if inv is None:
            self._next()
        elif self.stop_reason is not None:
            self.stop_worker(now=True)  # stopped before the call was sent: its death decides
        else:
            self._send(inv)

    def constructor_failed(self, error: dict[str, Any]) -> None:
        self.stop_worker(now=True)
        self.fail_agent(error, self.current)
        self._next()

    def worker_lost(self) -> None:
        """Its control channel closed: it is dead or dying, and gets no more calls."""
        self._worker_lost = True
        if self.worker is not W.ABSENT:
            self.worker = W.DYING

    def worker_exited(self, why: str, protocol_error: bool = False) -> None:
        """Its process is reaped; `why` describes its death."""
        stopped = self._worker_stopped
        self.worker = W.ABSENT
        self._worker_lost = self._worker_stopped = False
        self._arm(Timer.TIMEOUT, None)
        inv = self.current
        if inv is not None:
            self._after_death(inv, why, protocol_error)
            return
        if not stopped:
            self.event("process_died", detail=f"while idle: {why}")
        self._next()

    def _after_death(self, inv: Invocation, why: str, protocol_error: bool) -> None:
        """The worker died while `inv` was current: run it again, retry after a
        backoff, put it back, or fail it."""
        reason, self.stop_reason = self.stop_reason, None
        if inv.discard == Discard.REFUSED:  # its enqueue failed: it never existed (withdraw)
            self.current = None
            self._next()
            return
        if inv.discard == Discard.UNSAVED:
            inv.discard = None
            if reason is None:
                self.event("process_died", inv, "stopped: an earlier outcome could not be saved; "
                           "running again from the last saved state")
                self._bring_up()
                return
        if reason is None and protocol_error:
            self._finish(inv, S.FAILED, error=GolemError(
                Code.PROTOCOL_ERROR, f"the agent's process broke the control protocol ({why}); "
                "it was killed and restarts from its last saved state"))
            self._next()
            return
        if reason is None:
            reason = self._held_reason()
        if reason == StopReason.RECOVER:
            self.event("process_died", inv, "simulated crash; recovering at once")
            self._bring_up()
            return
        if reason == StopReason.TIMEOUT:
            self._finish(inv, S.FAILED, error=GolemError(
                Code.TIMEOUT, f"{inv.method}() ran longer than its timeout of {inv.timeout:g}s and was killed"))
            self._next()
            return
        if reason is not None:
            self.put_back(inv, reason)
            self._next()
            return
        self._crashed(inv, why)

    def _held_reason(self) -> StopReason | None:
        """Why nothing may run now, if the agent is held."""
        if self.deleted:
            return StopReason.DELETE
        if self.interrupted:
            return StopReason.INTERRUPT
        if self.ctx.draining:
            return StopReason.SHUTDOWN
        return None

    def _crashed(self, inv: Invocation, why: str) -> None:
        """It died by itself: retry under the policy."""
        policy = self.ctx.policy
        inv.attempts += 1
        self.event("process_died", inv, why)
        if self.start_failures >= policy.retry_attempts:
            self.fail_agent({"type": "ProcessDied", "message": f"its process died while starting, "
                             f"{self.start_failures} times in a row; last time {why}"}, inv,
                            what=f"{self.type_name} cannot start")
            self._next()
            return
        if inv.attempts >= policy.retry_attempts:
            self._finish(inv, S.FAILED, error=GolemError(
                Code.AGENT_DIED, f"the agent's process died during {inv.method}() on all "
                f"{inv.attempts} attempts; last time {why}"))
            self._next()
            return
        self.retry_count += 1
        self.retrying = True
        delay = policy.backoff(inv.attempts)
        self.event("retried", inv, f"attempt {inv.attempts + 1} after {delay:g}s")
        if not self.deleted:
            self.store.update_agent(self.name, retry_count=self.retry_count)
        self._arm(Timer.RETRY, delay)

    def end_backoff(self) -> None:
        """A retry's backoff ends now (interrupt, delete, shutdown, a refusal)."""
        if self.retrying:
            self._arm(Timer.RETRY, None)
            self._retry_due()

    def _retry_due(self) -> None:
        self.retrying = False
        self.stop_reason = None
        inv = self.current
        if inv is None:
            self._next()
            return
        if inv.discard == Discard.REFUSED:  # during the backoff
            self.current = None
            self._next()
            return
        reason = self._held_reason()
        if reason is not None:
            self.put_back(inv, reason)
            self._next()
            return
        self._bring_up()

    def put_back(self, inv: Invocation, reason: StopReason) -> None:
        """Stop `inv` without an outcome: interrupted, deleted or shut down."""
        self.current = None
        if reason == StopReason.DELETE:
            resolve(inv.waiters, error=GolemError(Code.INTERRUPTED, "the agent was deleted while "
                                                  f"{inv.method}() was running"))
            return
        inv.move(S.PENDING)
        self.queue.fifo.appendleft(inv)
        if not self.deleted:
            self.store.update_invocation(self.name, inv.key, status=S.PENDING.value)
        if reason == StopReason.INTERRUPT:
            resolve(inv.waiters, error=GolemError(
                Code.INTERRUPTED, f"{inv.method}() was interrupted; it runs again on resume"))
        else:
            resolve(inv.waiters, error=GolemError(
                Code.SHUTTING_DOWN, "the daemon is stopping; the invocation stays queued and runs "
                "after the restart"))

    # -- timers ------------------------------------------------------------

    def timer_fired(self, timer: Timer) -> None:
        self._armed.discard(timer)
        if timer is Timer.RETRY:
            if self.retrying:
                self._retry_due()
        elif timer is Timer.SCHEDULE:
            self._release_due()
        elif timer is Timer.IDLE:
            self._idle_due()
        elif timer is Timer.TIMEOUT:
            if self.current is not None and self.worker is W.READY:
                self.stop_reason = self.stop_reason or StopReason.TIMEOUT
                self.stop_worker(now=False)

    def arm_idle(self) -> None:
        """Suspend after idle_timeout without a call. One timer per idle spell,
        not per call: when it fires early it re-arms for what is left."""
        if self.worker is W.ABSENT or self.deleted or self.ctx.policy.idle_timeout <= 0:
            self._arm(Timer.IDLE, None)
            return
        if Timer.IDLE not in self._armed:
            self._arm(Timer.IDLE, self.ctx.policy.idle_timeout)

    def _idle_due(self) -> None:
        left = self.last_active_at + self.ctx.policy.idle_timeout - self.ctx.clock()
        if left > 0.001 and self.worker is not W.ABSENT:
            self._arm(Timer.IDLE, left)
            return
        self.suspend()

    def suspend(self) -> bool:
        """Stop an idle worker; the agent lives on in its snapshot. False if busy."""
        self._arm(Timer.IDLE, None)
        if self.current is not None or self.worker is W.ABSENT:
            return False
        if self.worker is W.DYING:
            return True  # on its way out already
        self.event("suspended")
        self.store.commit_soon()
        self.stop_worker(now=True)  # now, so that no call is sent to it meanwhile
        return True
