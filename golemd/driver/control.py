"""An agent's control operations: cancel, interrupt, resume, delete.

None of them waits for the invocation that is running: each changes the
facts, journals them, kills the worker if it must, and sets `abort` so that
whoever holds the running invocation (the warm path or the runner task, in
golemd.driver.agent) learns why its worker died.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation, resolve
from golemd.model.states import InvocationStatus

if TYPE_CHECKING:
    from golemd.driver.agent import Agent

S = InvocationStatus


class AgentControl:
    """Mixed into Agent (golemd.driver.agent), whose state these methods change."""

    def cancel(self: Agent, key: str) -> None:
        inv = self.active.get(key)
        if inv is None:
            row = self.sup.store.get_invocation(self.name, key)
            if row is None:
                raise GolemError(Code.NOT_FOUND, f"no invocation with idempotency key {key!r} on {self.name}")
            if row["status"] == S.CANCELED.value:
                return
            if row["status"] in (S.PENDING.value, S.RUNNING.value):
                # It ran, but its outcome could not be saved, so it would run again
                # after a restart: canceled, it will not.
                self.sup.store.update_invocation(self.name, key, status=S.CANCELED.value,
                                                 finished_at=time.time())
                return
            raise GolemError(Code.TOO_LATE, f"invocation {key!r} already completed")
        if inv.status == S.RUNNING:
            raise GolemError(Code.TOO_LATE, f"invocation {key!r} has already started")
        # Journal first: a cancel that cannot be written changes nothing.
        self.sup.store.update_invocation(self.name, key, status=S.CANCELED.value, finished_at=time.time())
        if inv.status == S.SCHEDULED:
            self.scheduled = [t for t in self.scheduled if t[2] is not inv]
            self._arm_schedule()
        else:
            self.queue.remove(inv)
        inv.move(S.CANCELED)
        del self.active[key]
        resolve(inv.waiters, error=GolemError(Code.CANCELED, f"invocation {key!r} was canceled"))

    def withdraw(self: Agent, inv: Invocation, err: GolemError) -> None:
        """Forget an invocation whose enqueue was never committed. One that
        started early (golemd.driver.supervisor: an awaited call to an idle warm
        agent) is stopped with its worker, so that the state it left in that
        process is dropped too; its reply, if it comes first, is ignored."""
        inv.rowid = 0  # its insert was rolled back: the row id may be another's soon
        if self.active.get(inv.key) is not inv:
            return  # finished already, in the same failed commit (its outcome's deliver drops the state)
        if inv.status == S.RUNNING:
            del self.active[inv.key]  # unknown at once, though its worker takes a moment to die
            inv.discard = "refused"
            resolve(inv.waiters, error=err)
            self.wake.set()  # a retry's backoff ends: there is nothing to retry
            if self.worker is not None:
                self.worker.kill()
            return
        self.active.pop(inv.key)
        if inv in self.queue:
            self.queue.remove(inv)
        self.scheduled = [t for t in self.scheduled if t[2] is not inv]
        resolve(inv.waiters, error=err)

    def interrupt(self: Agent, recover: bool) -> None:
        if recover:
            if self.worker is not None and self.worker.alive:
                if self.current is not None:
                    self.abort = "recover"
                self.worker.kill()
            return
        if not self.interrupted:
            self.interrupted = True
            self.event("interrupted", self.current)
            self.sup.store.update_agent(self.name, interrupted=1)
        if self.current is not None:
            self.abort = self.abort or "interrupt"
            if self.worker is not None:
                self._stop_worker(self.worker)
            self.wake.set()

    def resume(self: Agent) -> None:
        if self.interrupted:
            self.interrupted = False
            self.event("resumed")
            self.sup.store.update_agent(self.name, interrupted=0)
            self.kick()

    def delete(self: Agent) -> None:
        self.deleted = True
        if self._sched_timer is not None:
            self._sched_timer.cancel()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self.current is not None:
            self.abort = "delete"
            self.wake.set()
        if self.worker is not None:
            worker = self.worker
            asyncio.ensure_future(self._stop_then_reap(worker))
        pending = list(self.queue) + [t[2] for t in self.scheduled]
        self.queue.clear()
        self.scheduled.clear()
        for inv in pending:
            resolve(inv.waiters, error=GolemError(Code.CANCELED, f"the agent was deleted before {inv.key!r} ran"))
        self.output.end("deleted")
        self.output.file.remove()

