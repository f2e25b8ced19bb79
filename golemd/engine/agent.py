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

from golemd.engine.effects import (
    IDLE,
    Discard,
    StopReason,
    Timer,
    WorkerState,
)
from golemd.engine.running import AgentRun
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation, resolve
from golemd.model.states import InvocationStatus

S = InvocationStatus
W = WorkerState


class AgentEngine(AgentRun):
    __slots__ = ()

    # -- the worker's life -------------------------------------------------

    def worker_spawned(self) -> None:
        """Its process exists; its agent is being built."""
        self.start_failures += 1  # until the agent is built: a death now is a crash loop
        if self.ctx.observer is not None:
            self.ctx.observer.worker_started(self.type_name)

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
        self._worker_built = True
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
        if not stopped and self.ctx.observer is not None:
            self.ctx.observer.worker_died(self.type_name)
        if stopped and not self._worker_built and self.start_failures:
            self.start_failures -= 1  # we stopped it while it started: no crash loop of its own
        self.worker = W.ABSENT
        self.drops_pending.clear()
        self.queue.restore_ahead()  # never started: they run next, in order
        self._worker_lost = self._worker_stopped = self._worker_built = False
        self._arm(Timer.TIMEOUT, None)
        inv = self.current
        if inv is not None:
            if not self._current_sent:
                self._not_its_death(inv)
            else:
                self._after_death(inv, why, protocol_error, stopped)
            return
        reason, self.stop_reason = self.stop_reason, None
        if reason == StopReason.RECOVER:
            self.event("process_died", detail="simulated crash while idle; recovering at once")
            if self._held_reason() is None and self.failed_error is None and not self._may_run():
                self._bring_up()  # a new worker, from the saved state, idle
                return
        elif not stopped:
            self.event("process_died", detail=f"while idle: {why}")
        self._next()

    def _not_its_death(self, inv: Invocation) -> None:
        """The worker died before `inv` was sent to it: `inv` runs on the next
        one, unless the agent is held meanwhile."""
        self.stop_reason = None  # a stop of that worker, which is gone
        if not self._put_back_if_held(inv):
            self._bring_up()

    def _after_death(self, inv: Invocation, why: str, protocol_error: bool, stopped: bool = False) -> None:
        """The worker died while `inv` was current: run it again, retry after a
        backoff, put it back, or fail it. `stopped`: we stopped that worker."""
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
        if reason == StopReason.RECOVER and self._held_reason() is not None:
            reason = self._held_reason()  # held since: it waits
        if reason == StopReason.RECOVER:
            self.event("process_died", inv, "simulated crash; recovering at once")
            self._bring_up()
            return
        if reason == StopReason.SUSPEND:
            if self._put_back_if_held(inv):
                return
            if inv.waiting_for is not None:
                self._current_sent = False  # parked: wait_ended sends it again
                self.event("suspended", inv, "waiting past suspend_after; runs again when the wait ends")
                self.store.commit_soon()
                self.out.append(IDLE)
            else:
                self._bring_up()  # the wait ended while its worker stopped
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
        if stopped:
            # Stopped for a reason that was someone else's (a call that replied
            # before its timeout's or interrupt's stop landed): no crash of this one.
            self._bring_up()
            return
        self._crashed(inv, why)

    def _put_back_if_held(self, inv: Invocation) -> bool:
        """If the agent is held (deleted, interrupted, draining), `inv` goes
        back without an outcome and what may run next does: True."""
        held = self._held_reason()
        if held is None:
            return False
        self.put_back(inv, held)
        self._next()
        return True

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
        if self.ctx.observer is not None:
            self.ctx.observer.retried(self.type_name)
        delay = policy.backoff(inv.attempts)
        self.event("retried", inv, f"attempt {inv.attempts + 1} after {delay:g}s: {why}")
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

    # -- durable execution: waits ------------------------------------------

    def suspend_waiting(self, inv: Invocation) -> None:
        """`inv` has waited suspend_after: stop its worker; it is parked
        (Suspended, still current) until its wait ends."""
        if inv is self.current and inv.waiting_for is not None and self.worker is W.READY and self._current_sent:
            self.stop_reason = self.stop_reason or StopReason.SUSPEND
            self.stop_worker(now=True)

    def wait_ended(self, inv: Invocation) -> None:
        """What `inv` waited on is journaled: a parked one is sent again (it
        replays up to its wait and goes on); a worker blocked on it has been
        told by the driver."""
        if inv is not self.current or self._current_sent or inv.waiting_for is not None:
            return
        if self._put_back_if_held(inv):
            return
        if self._warm():
            self._send(inv)
        else:
            self._bring_up()

    def release_parked(self) -> None:
        """A hold (interrupt, delete, shutdown) of a parked invocation: no
        worker's death will come to put it back, so it goes back now."""
        inv = self.current
        if inv is None or inv.waiting_for is None or self._current_sent:
            return
        if self._held_reason() is not None:
            self.stop_reason = None
            self._put_back_if_held(inv)

    def rerun(self, inv: Invocation) -> None:
        """An effect of `inv` could not be journaled: its worker holds what
        the journal does not, so it is stopped and `inv` runs again from the
        last saved state (as after a crash, counted as none)."""
        if inv is not self.current:
            return
        if not self._current_sent:
            self.wait_ended(inv)  # parked: it has no worker to stop; it is sent again
        elif self.worker is W.READY:
            self.stop_worker(now=True)

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
