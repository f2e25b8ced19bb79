"""The engine's queue and outcomes: what starts next, and how an invocation
ends (its outcome written, then its callers answered from the commit)."""

from __future__ import annotations

from typing import Any

from golemd.engine.effects import (
    IDLE,
    Discard,
    Send,
    Timer,
    WorkerState,
)
from golemd.engine.state import AgentState
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation, resolve
from golemd.model.states import InvocationStatus
from golemd.wire.codec import pack

S = InvocationStatus
W = WorkerState


class AgentRun(AgentState):
    __slots__ = ()

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
        """Start the head of the queue if nothing runs (else send calls ahead)."""
        if self.current is not None:
            self.top_up()
            return
        if self.queue.ahead or not self._may_run():
            return  # what was sent ahead goes first, once its worker is reaped
        inv = self.queue.fifo.popleft()
        self._begin(inv)
        if inv.waiting_for is not None:
            return  # parked: it waits (durable execution) with no worker, until wait_ended
        if self._warm():
            self._send(inv)
            self.top_up()
        else:
            self._bring_up()

    def top_up(self) -> None:
        """Send queued calls to the worker behind the running one, up to
        ctx.batch: it reads them together and runs them one after another,
        with no wake-up in between. Each stays pending, and cancelable, until
        the one before it replies (golemd.engine.control.cancel). Not while a
        caller streams: output is attributed to the call known to be running."""
        limit = self.ctx.batch
        if (not limit or self.listened or self.drops_pending or self.cancels_pending or self.polling
                or not self._warm()):
            return
        q = self.queue
        ahead, fifo = q.ahead, q.fifo
        if len(ahead) >= limit or not fifo or not self._may_start():
            return
        out = self.out
        while len(ahead) < limit and fifo and fifo[0].journaled:
            inv = fifo.popleft()
            ahead.append(inv)
            out.append(Send(inv, ahead=True))

    def dropping(self, inv: Invocation) -> None:
        """The driver is about to ask the worker to drop `inv` (and those after
        it), then read what the worker wrote before: `polled()` follows. A
        `dropped` read meanwhile puts them back in the queue, and nothing is
        sent again before the driver knows what became of `inv`."""
        self.drops_pending.add(inv)
        self.polling = True

    def polled(self) -> None:
        self.polling = False

    def drop_settled(self, inv: Invocation) -> None:
        """The drop's fate is known (`inv` had not started: the worker drops it)."""
        self.drops_pending.discard(inv)
        self.kick()

    def to_unsend(self) -> Invocation | None:
        """The first call sent ahead, for the driver to take back (drain,
        reload); None if there is none, or if its worker is being stopped:
        what that worker was sent comes back when it dies (worker_exited),
        and its first may be running there already (its predecessor replied
        while the agent was held), so a drop could not be sure to win."""
        ahead = self.queue.ahead
        return ahead[0] if ahead and self.worker is not W.DYING else None

    def unsend(self) -> None:
        """What was sent ahead goes back to the queue (the daemon drains, or
        new code is loaded): the driver has asked the worker to drop it."""
        q = self.queue
        if q.ahead:
            q.unsend_from(q.ahead[0])

    def dropped(self, inv: Invocation) -> None:
        """The worker dropped `inv`, unstarted, and every call sent after it,
        as a cancel asked. If `inv` was taken for started (the call before it
        replied meanwhile) it runs first again; if it is still sent ahead, it
        and those after it are sent again in order."""
        q = self.queue
        if inv is self.current:
            self.drops_pending.discard(inv)
            self._arm(Timer.TIMEOUT, None)
            inv.move(S.PENDING)
            self.current = None
            q.restore_ahead()
            q.fifo.appendleft(inv)
            self.kick()
        elif inv in q.ahead:
            self.drops_pending.discard(inv)
            q.unsend_from(inv)
            self.kick()
        # Else a cancel took it out of the queue: its drop is settled when that
        # cancel commits (drop_settled), so that nothing after it goes ahead
        # meanwhile and, if the commit fails, it goes again in its place.

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

    def replied(self, inv: Invocation, reply: dict[str, Any]) -> None:
        """The worker's reply to `inv`."""
        if inv is not self.current or not self._current_sent:
            return  # not sent to a worker since it began: a stale reply from a dying one
        self._arm(Timer.TIMEOUT, None)
        if inv.discard is not None:
            self.stop_worker(now=True)  # its death decides (worker_exited)
            return
        self.stop_reason = None  # it ended before a stop could: the stop is no one's now
        self.drops_pending.discard(inv)  # if it was asked: it had started, the drop is ignored
        self._complete(inv, reply)
        ahead = self.queue.ahead
        if ahead and self._may_start():
            # The worker starts the next one it was sent as soon as it has
            # replied (even if it is dying: a death now is that one's). Not
            # if the agent was held meanwhile (interrupted, draining): what
            # was sent ahead was pending then and stays so; the worker is
            # being stopped, and gives it back when it dies (worker_exited).
            nxt = ahead.pop(0)
            self._begin(nxt)
            self._current_sent = True
            if nxt.timeout is not None:
                self._arm(Timer.TIMEOUT, nxt.timeout)
            self.top_up()
        else:
            self._next()

    def internal_error(self, inv: Invocation, err: GolemError) -> None:
        """Our bug, not the agent's: fail the invocation rather than leave it running."""
        if inv.status == S.RUNNING:
            self._finish(inv, S.FAILED, error=err)
        self._next()

    def _complete(self, inv: Invocation, reply: dict[str, Any]) -> None:
        if self.ctx.crash_point is not None:
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
            inv.error = error
            outcome = {"error": error.to_wire()}
        waiters, inv.waiters = inv.waiters, []
        store = self.store
        try:
            if not self.deleted:
                keep = snapshot_changed and self.durable
                small = keep and len(self.snapshot or b"") <= self.ctx.policy.revert_snapshot_bytes
                # Keep stored outcomes bounded: prune now and then, not on every call.
                prune = self.completed_count % 1000 == 0
                # A completion whose row holds all it changed leaves the agent's
                # row to be written later: its readers roll it forward over this
                # one (golemd.storage.rollforward). A prune may drop such rows,
                # so it writes the agent's row in its own transaction.
                self.fin += 1
                later = status is S.COMPLETED and (small or not keep) and not prune
                # _value_, not .value: Enum's property costs two Python calls per read.
                store.finish_invocation(inv.rowid, status._value_, pack(outcome), now, inv.started_at,
                                        self.snapshot if small else None, snapshot_kept=small or not keep,
                                        fin=self.fin if later else None)
                if later:
                    store.write_later(self.name, self._write_row_now)
                else:
                    store.write_before_commit(self.name, self._write_row_now)
                if prune:
                    policy = self.ctx.policy
                    store.prune(self.name, policy.retention_count, now - policy.retention_seconds)
        except GolemError as err:
            # The outcome could not be journaled: say so rather than report it.
            self._uncount(status)
            self.drop_unsaved_state()
            resolve(waiters, error=err)
            return
        crash_point = self.ctx.crash_point
        observer = self.ctx.observer

        def deliver(failed: GolemError | None) -> None:
            if crash_point is not None:
                crash_point("finished")
            if failed is not None:
                self._uncount(status)
                self.drop_unsaved_state()
                resolve(waiters, error=failed)
                if self.out and self.on_effects is not None:
                    self.on_effects()  # the stop it asked for, from outside any driver call
                return
            if observer is not None:
                observer.ended(self.name, self.type_name, inv, status.value, now, self.ctx.clock())
            if error is not None:
                resolve(waiters, error=error)
            else:
                resolve(waiters, value=result)

        store.on_commit(deliver)

    def _uncount(self, status: InvocationStatus) -> None:
        """An outcome the journal lost is no outcome (it is pending there, and
        runs again after a restart): it leaves the counts the agent's row is
        written with as they were."""
        if status == S.COMPLETED:
            self.completed_count -= 1
        else:
            self.failed_count -= 1
            # A failure's commit writes the agent's row, so the committed row
            # has the last error the journal knows (a later one lost with it too).
            row = None if self.deleted else self.store.agent_row(self.name)
            self.last_error = row.get("last_error") if row is not None else None

    def drop_unsaved_state(self) -> None:
        """An outcome could not be committed, so the worker holds a state the
        store does not: stop it, and go on from the last saved state, as after
        a crash. A call it was running meanwhile (the next one goes out before
        the commit) runs again from there; so does one sent to a worker being
        stopped already (its reply may race the stop: it must not count), but
        not one sent to a worker that is dead already (its death is a crash)."""
        if self.deleted or not self.durable:
            return
        self.snapshot = self.store.saved_snapshot(self.name)
        worker = self.worker
        if worker is W.READY or worker is W.STARTING:
            if self.current is not None and self.current.discard is None:
                self.current.discard = Discard.UNSAVED
            self.stop_worker(now=True)
        elif worker is W.DYING and self._current_sent and not self._worker_lost:
            if self.current is not None and self.current.discard is None:
                self.current.discard = Discard.UNSAVED

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
