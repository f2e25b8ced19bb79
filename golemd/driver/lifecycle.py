"""An agent's worker process: starting it, its death (retry, put back or
fail the invocation it was running), its output, and suspending it.

Mixed into Agent (golemd.driver.agent). A death reaches the code holding the
running invocation (the warm path's callback or the runner task), which
calls `_after_death` with what it knows; `abort` (set by the control
operations, golemd.driver.control) and the invocation's `discard` say why it
died when it was not a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from golemd.host.workers import Worker, describe_exit
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation, resolve
from golemd.model.states import InvocationStatus

if TYPE_CHECKING:
    from golemd.driver.agent import Agent

log = logging.getLogger("golemd.agent")
S = InvocationStatus


class ConstructorFailed(Exception):
    def __init__(self, error: dict[str, Any]):
        super().__init__(error.get("message"))
        self.error = error


class AgentWorker:
    """Mixed into Agent (golemd.driver.agent), whose state these methods change."""

    async def _ensure_worker(self: Agent) -> Worker:
        if self._warm():
            assert self.worker is not None
            return self.worker
        # None, dead, or running code that a reload replaced: start afresh.
        if self.worker is not None:
            await self._reap_worker(self.worker)
        snapshot = self.snapshot if self.durable else None
        worker = await self.sup.spawn_worker(
            self, {"op": "init", "args": list(self.id.args), "snapshot": snapshot,
                   "spin_us": self.sup.config.spin_us})
        worker.on_dead = self._worker_died
        self.worker = worker
        self.start_failures += 1  # until the agent is built: a death now is a crash loop
        assert worker.initialized is not None
        reply = await worker.initialized
        self.start_failures = 0
        if not reply["ok"]:
            worker.kill()
            raise ConstructorFailed(reply["error"])
        if snapshot is not None:
            self.event("resumed_from_snapshot", detail=f"pid {worker.pid}")
        return worker

    async def _reap_worker(self: Agent, worker: Worker | None) -> int | None:
        if worker is None:
            return None
        worker.kill()
        code = await worker.wait()
        if self.worker is worker:
            self.worker = None
            if not self.deleted:
                self.output.file.close()  # reopened by the next line; suspended agents hold no fd
        self.sup.worker_gone(self, worker)
        return code

    async def _stop_then_reap(self: Agent, worker: Worker) -> None:
        await worker.stop(self.sup.config.stop_grace)
        await self._reap_worker(worker)

    def _worker_died(self: Agent, worker: Worker) -> None:
        """A worker died. During an invocation the runner handles it; otherwise reap it here."""
        if self.worker is worker and self.current is None and self.runner is None:
            if not worker.killed:
                self.event("process_died", detail=f"while idle: {worker.death_reason}")
            asyncio.ensure_future(self._reap_worker(worker))

    def _stop_worker(self: Agent, worker: Worker) -> None:
        """Stop a worker politely (SIGTERM), then for sure (SIGKILL) after the grace."""
        asyncio.ensure_future(worker.stop(self.sup.config.stop_grace))

    def _time_out(self: Agent, worker: Worker) -> None:
        if self.abort is None:
            self.abort = "timeout"
        self._stop_worker(worker)

    async def _after_death(self: Agent, inv: Invocation, why: str, code: int | None,
                           worker: Worker | None) -> bool:
        """The worker died during `inv`. Return True to run it again."""
        reason, self.abort = self.abort, None
        if inv.discard == "refused":  # its enqueue failed: it never existed (withdraw)
            self.current = None
            return False
        if inv.discard == "unsaved":
            inv.discard = None
            if reason is None:
                self.event("process_died", inv, "stopped: an earlier outcome could not be saved; "
                           "running again from the last saved state")
                return True
        if reason is None and worker is not None and worker.protocol_error:
            self._finish(inv, S.FAILED, error=GolemError(
                Code.PROTOCOL_ERROR, f"the agent's process broke the control protocol "
                f"({worker.death_reason}); it was killed and restarts from its last saved state"))
            return False
        if reason is None and (self.deleted or self.interrupted or self.sup.draining):
            reason = "delete" if self.deleted else "interrupt" if self.interrupted else "shutdown"
        if reason == "recover":
            self.event("process_died", inv, "simulated crash; recovering at once")
            return True
        if reason == "timeout":
            self._finish(inv, S.FAILED, error=GolemError(
                Code.TIMEOUT, f"{inv.method}() ran longer than its timeout of {inv.timeout:g}s and was killed"))
            return False
        if reason is not None:
            self._put_back(inv, reason)
            return False
        # It crashed by itself: retry under the policy.
        died = describe_exit(code) if code is not None else why
        inv.attempts += 1
        self.event("process_died", inv, died)
        if self.start_failures >= self.sup.config.retry_attempts:
            self._fail_agent({"type": "ProcessDied", "message": f"its process died while starting, "
                              f"{self.start_failures} times in a row; last time {died}"}, inv,
                             what=f"{self.id.type} cannot start")
            return False
        if inv.attempts >= self.sup.config.retry_attempts:
            self._finish(inv, S.FAILED, error=GolemError(
                Code.AGENT_DIED, f"the agent's process died during {inv.method}() on all "
                f"{inv.attempts} attempts; last time {died}"))
            return False
        self.retry_count += 1
        self.retrying = True
        delay = min(self.sup.config.retry_backoff_initial * 2 ** (inv.attempts - 1),
                    self.sup.config.retry_backoff_max)
        self.event("retried", inv, f"attempt {inv.attempts + 1} after {delay:g}s")
        if not self.deleted:
            self.sup.store.update_agent(self.name, retry_count=self.retry_count)
        self.wake.clear()
        try:
            await asyncio.wait_for(self.wake.wait(), delay)
        except TimeoutError:
            pass
        self.retrying = False
        self.abort = None
        if inv.discard == "refused":  # during the backoff
            self.current = None
            return False
        if self.deleted or self.interrupted or self.sup.draining:
            self._put_back(inv, "delete" if self.deleted else "interrupt" if self.interrupted else "shutdown")
            return False
        return True

    def _put_back(self: Agent, inv: Invocation, reason: str) -> None:
        """Stop `inv` without an outcome: interrupted, deleted or shut down."""
        self.current = None
        if reason == "delete":
            resolve(inv.waiters, error=GolemError(Code.INTERRUPTED, "the agent was deleted while "
                                                   f"{inv.method}() was running"))
            return
        inv.move(S.PENDING)
        self.queue.appendleft(inv)
        if not self.deleted:
            self.sup.store.update_invocation(self.name, inv.key, status=S.PENDING.value)
        if reason == "interrupt":
            resolve(inv.waiters, error=GolemError(
                Code.INTERRUPTED, f"{inv.method}() was interrupted; it runs again on resume"))
        else:
            resolve(inv.waiters, error=GolemError(
                Code.SHUTTING_DOWN, "the daemon is stopping; the invocation stays queued and runs "
                "after the restart"))

    def _drop_unsaved_state(self: Agent) -> None:
        """An outcome could not be committed, so the worker holds a state the
        store does not: stop it, and go on from the last saved state, as after
        a crash. A call it was running meanwhile (the next one goes out before
        the commit) runs again from there."""
        if self.deleted or not self.durable:
            return
        self.snapshot = self.sup.store.saved_snapshot(self.name)
        self._snapshot_dirty = False
        worker = self.worker
        if worker is not None and worker.alive:
            if self.current is not None and self.current.discard is None:
                self.current.discard = "unsaved"
            worker.kill()

    def on_output(self: Agent, stream: str, line: str, cut: bool = False) -> None:
        """A line of the worker's output; `cut`: a piece of a line over 64 KiB."""
        if cut:
            self.output.cut_lines += 1
        cur = self.current
        entry = {"type": "output", "stream": stream, "line": line, "ts": time.time(),
                 "idempotency_key": cur.key if cur else None}
        self.output.add(entry)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s: %s", self.name, stream, line)
        if cur is not None:
            for listener in cur.listeners:
                listener(entry)

    def _arm_idle(self: Agent) -> None:
        """Suspend after idle_timeout without a call. One timer per idle spell,
        not per call: when it fires early it re-arms for what is left."""
        if self.worker is None or self.deleted or self.sup.config.idle_timeout <= 0:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            return
        if self._idle_timer is None:
            self._idle_timer = asyncio.get_running_loop().call_later(
                self.sup.config.idle_timeout, self._idle_due)

    def _idle_due(self: Agent) -> None:
        self._idle_timer = None
        left = self.last_active_at + self.sup.config.idle_timeout - time.time()
        if left > 0.001 and self.worker is not None:
            self._idle_timer = asyncio.get_running_loop().call_later(left, self._idle_due)
            return
        self.suspend()

    def suspend(self: Agent) -> bool:
        """Stop an idle worker; the agent lives on in its snapshot. False if busy."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.current is not None or self.runner is not None or self.worker is None:
            return False
        self.event("suspended")
        self.sup.store.commit_soon()
        self.worker.kill()  # now, so that no call is sent to it meanwhile (_warm)
        asyncio.create_task(self._reap_worker(self.worker))
        return True
