"""An agent's control operations: cancel, withdraw, interrupt, resume, delete,
shutdown. None of them waits for the invocation that is running: each changes
the facts, journals them, stops the worker if it must, and leaves
`stop_reason` for the death that follows (golemd.engine.agent)."""

from __future__ import annotations

from golemd.engine.agent import AgentEngine
from golemd.engine.effects import Discard, StopReason, WorkerState
from golemd.engine.revert import RevertPlan
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation, resolve
from golemd.model.states import InvocationStatus

S = InvocationStatus


def cancel(eng: AgentEngine, key: str) -> None:
    """Cancel a pending invocation (raises NOT_FOUND or TOO_LATE)."""
    inv = eng.queue.active.get(key)
    now = eng.ctx.clock()
    if inv is None:
        row = eng.store.get_invocation(eng.name, key)
        if row is None:
            raise GolemError(Code.NOT_FOUND, f"no invocation with idempotency key {key!r} on {eng.name}")
        if row["status"] == S.CANCELED.value:
            return
        if row["status"] in (S.PENDING.value, S.RUNNING.value):
            # It ran, but its outcome could not be saved, so it would run again
            # after a restart: canceled, it will not.
            eng.store.update_invocation(eng.name, key, status=S.CANCELED.value, finished_at=now)
            return
        raise GolemError(Code.TOO_LATE, f"invocation {key!r} already completed")
    if inv.status == S.RUNNING:
        raise GolemError(Code.TOO_LATE, f"invocation {key!r} has already started")
    if not _waiting(eng, inv):
        return  # canceled already, by a cancel whose commit is to come: that one tells its callers
    # Journal first: a cancel that cannot be written changes nothing.
    eng.store.update_invocation(eng.name, key, status=S.CANCELED.value, finished_at=now)
    # Out of the queue now, so that it cannot start; canceled, forgotten and
    # its callers told once that write commits (the caller of cancel awaits
    # the same commit). If the commit fails, it was never canceled.
    eng.queue.remove(inv)
    if inv.status == S.SCHEDULED:
        eng.arm_schedule()
    else:
        eng.cancels_pending.add(inv)  # nothing after it goes first meanwhile
    eng.kick()  # those sent after it go again (once the cancel commits)
    eng.store.on_commit(lambda err: _canceled(eng, inv, err))


def _waiting(eng: AgentEngine, inv: Invocation) -> bool:
    """Whether a pending `inv` is in the queue: else a cancel of it awaits its commit."""
    q = eng.queue
    return inv in q.fifo or inv in q.ahead or any(t[2] is inv for t in q.scheduled)


def _canceled(eng: AgentEngine, inv: Invocation, err: GolemError | None) -> None:
    """The commit of a cancel of `inv`."""
    q = eng.queue
    eng.cancels_pending.discard(inv)  # what waited behind it may go now
    if q.active.get(inv.key) is not inv:
        eng.kick()
        return  # withdrawn: its enqueue was lost in the same commit
    if err is not None and not eng.deleted:
        # The journal has it pending still: back to its place, by seq (behind
        # any sent ahead of the worker meanwhile, which may have started).
        if inv.status == S.SCHEDULED:
            q.add(inv)
            eng.arm_schedule()
        else:
            fifo = q.fifo
            fifo.insert(next((i for i, other in enumerate(fifo) if other.seq > inv.seq), len(fifo)), inv)
        if eng.failed_error is not None:  # the agent failed meanwhile: it fails, as its queue did
            eng.fail_all_pending(GolemError.from_wire(eng.failed_error))
        else:
            eng.kick()
        return
    # Canceled; or the agent was deleted meanwhile, and it will not run either.
    inv.move(S.CANCELED)
    del q.active[inv.key]
    if eng.ctx.observer is not None:
        now = eng.ctx.clock()
        eng.ctx.observer.ended(eng.name, eng.type_name, inv, S.CANCELED.value, now, now)
    resolve(inv.waiters, error=GolemError(Code.CANCELED, f"invocation {inv.key!r} was canceled"))
    eng.kick()


def withdraw(eng: AgentEngine, inv: Invocation, err: GolemError) -> None:
    """Forget an invocation whose enqueue was never committed. One that
    started early (an awaited call to an idle warm agent) is stopped with its
    worker, so that the state it left in that process is dropped too; its
    reply, if it comes first, is ignored."""
    inv.rowid = 0  # its insert was rolled back: the row id may be another's soon
    if eng.queue.active.get(inv.key) is not inv:
        return  # finished already, in the same failed commit (its outcome's deliver drops the state)
    if inv.status == S.RUNNING:
        del eng.queue.active[inv.key]  # unknown at once, though its worker takes a moment to die
        inv.discard = Discard.REFUSED
        resolve(inv.waiters, error=err)
        eng.end_backoff()  # there is nothing to retry
        if eng.current is inv:
            eng.stop_worker(now=True)
        return
    eng.queue.active.pop(inv.key)
    eng.queue.remove(inv)
    resolve(inv.waiters, error=err)


def interrupt(eng: AgentEngine, recover: bool) -> None:
    if recover:
        if eng.worker is WorkerState.READY or eng.worker is WorkerState.STARTING:
            # Idle too: the worker comes back at once (as Golem recovers an
            # idle worker), so that the status it answers is the one it keeps.
            eng.stop_reason = StopReason.RECOVER
            eng.stop_worker(now=True)
        return
    if not eng.interrupted:
        eng.interrupted = True
        held = "stopped, it runs again on resume" if eng.current is not None else "its queue is held until resume"
        eng.event("interrupted", eng.current, f"by the user: {held}")
        eng.store.update_agent(eng.name, interrupted=1)
        eng.tell_held(eng.queue.waiting())
    if eng.current is not None:
        if eng.stop_reason in (None, StopReason.RECOVER, StopReason.SUSPEND):  # a hold outranks a retry
            eng.stop_reason = StopReason.INTERRUPT
        eng.stop_worker(now=False)
        eng.end_backoff()
        eng.release_parked()


def resume(eng: AgentEngine) -> None:
    if eng.interrupted:
        eng.interrupted = False
        eng.event("resumed")
        eng.store.update_agent(eng.name, interrupted=0)
        eng.kick()


def delete(eng: AgentEngine) -> list[Invocation]:
    """Stop everything; the agent's rows are the caller's to delete. Returns
    the pending invocations, whose callers have been told."""
    eng.deleted = True
    eng.arm_schedule()
    eng.arm_idle()
    if eng.current is not None:
        eng.stop_reason = StopReason.DELETE
        eng.end_backoff()
        eng.release_parked()
    eng.stop_worker(now=False)
    pending = eng.queue.take_all()
    for inv in pending:
        resolve(inv.waiters, error=GolemError(Code.CANCELED, f"the agent was deleted before {inv.key!r} ran"))
    return pending


def shutdown(eng: AgentEngine) -> None:
    """The daemon is stopping (its context is draining): stop the running
    invocation's worker now; the invocation stays journaled."""
    if eng.current is not None:
        eng.stop_reason = StopReason.SHUTDOWN
        eng.end_backoff()
        eng.release_parked()
    eng.stop_worker(now=True)


def revert(eng: AgentEngine, plan: RevertPlan) -> None:
    """Forget the invocations of `plan` and go back to the state before them
    (agent revert). Refused (TOO_LATE) while an invocation runs or waits: the
    state it works on would change under it."""
    if eng.current is not None:
        raise GolemError(Code.TOO_LATE, f"{eng.current.method}() ({eng.current.key}) is running: revert "
                         "once it has finished, or interrupt it first")
    if not plan.keys:
        return
    eng.store.forget_invocations(eng.name, plan.keys)
    eng.completed_count -= plan.completed
    eng.failed_count -= plan.failed
    if eng.failed_error is not None:
        # Failed (it could not start from its state, or its process died at
        # every start): the reverted state gets another chance, as in Golem.
        eng.failed_error = None
        eng.start_failures = 0
        eng.store.update_agent(eng.name, failed_error=None)
    if eng.durable:
        eng.snapshot = plan.snapshot
        eng.store.update_agent(eng.name, snapshot=plan.snapshot, completed_count=eng.completed_count,
                               failed_count=eng.failed_count, fin_upto=eng.fin)
    else:
        eng.store.update_agent(eng.name, completed_count=eng.completed_count, failed_count=eng.failed_count,
                               fin_upto=eng.fin)
    n = len(plan.keys)
    eng.event("reverted", detail=f"{n} invocation{'' if n == 1 else 's'} forgotten: {', '.join(plan.keys)}"[:2000])
    # Its worker holds the newer state: the next call starts one from the reverted state.
    eng.stop_worker(now=True)
