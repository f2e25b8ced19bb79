"""One agent: its pending FIFO, its running invocation, its worker, its history.

An invocation enters the queue when it is accepted and may start once its
enqueue is committed (`Invocation.journaled`), except an awaited call to an
idle warm agent, which starts at once and is journaled while it runs
(`start_early`). It runs from the head of the queue, one at a time, in one
of two ways:

- the warm path: the agent's worker is alive and idle, so the call is sent at
  once and its reply handled from inside the read of it (`_run_warm`); the
  outcome is recorded and the next call sent in that same loop round;
- the runner task, for everything that must wait: starting a worker (from the
  last snapshot), retrying after a death with backoff, and every death,
  including one on the warm path, which hands its invocation over.

Either way the outcome is committed together with the new snapshot before
any caller hears of it. Control operations (cancel, interrupt, delete, in
golemd.driver.control) never wait: they change the facts, kill the worker if
they must, and whoever holds the invocation reads `abort` to learn why its
worker died. The worker's own life (start, death, output, suspension) is in
golemd.driver.lifecycle.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from golemd.driver.control import AgentControl
from golemd.driver.lifecycle import AgentWorker, ConstructorFailed
from golemd.faults import crash_point
from golemd.host.agentlog import AgentOutput, log_path
from golemd.host.workers import TemplateError, Worker, WorkerDied
from golemd.model.agent_id import AgentId
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation, resolve
from golemd.model.states import AgentStatus, InvocationStatus, derive_agent_status
from golemd.wire.codec import pack

if TYPE_CHECKING:
    from golemd.driver.supervisor import Supervisor

log = logging.getLogger("golemd.agent")
S = InvocationStatus


class Agent(AgentControl, AgentWorker):
    def __init__(self, sup: Supervisor, aid: AgentId, type_info: dict[str, Any] | None,
                 row: dict[str, Any] | None = None):
        self.sup = sup
        self.id = aid
        self.name = aid.canonical
        self.type_info = type_info
        now = time.time()
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
        self.queue: deque[Invocation] = deque()
        self.scheduled: list[tuple[float, int, Invocation]] = []
        self.active: dict[str, Invocation] = {}
        self.current: Invocation | None = None
        self.worker: Worker | None = None
        self.retrying = False
        self.deleted = False
        self.abort: str | None = None
        self.runner: asyncio.Task[None] | None = None
        self._settled: list[asyncio.Future[None]] = []  # told when nothing runs any more
        self.wake = asyncio.Event()
        self.output = AgentOutput(log_path(sup.logs_dir, self.name), sup.config.log_buffer_lines,
                                  sup.config.log_buffer_bytes, sup.config.agent_log_bytes)
        self.listened = 0  # how many queued invocations have streaming callers
        self.start_failures = 0  # consecutive worker deaths before the agent was built
        self._sched_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- facts -----------------------------------------------------------

    @property
    def durable(self) -> bool:
        return bool(self.type_info and self.type_info["durable"])

    @property
    def status(self) -> AgentStatus:
        return derive_agent_status(
            failed=self.failed_error is not None, interrupted=self.interrupted,
            retrying=self.retrying, running=self.current is not None,
            worker_alive=self.worker is not None and self.worker.alive)

    @property
    def pending_count(self) -> int:
        return len(self.queue) + len(self.scheduled)

    def metadata(self) -> dict[str, Any]:
        worker = self.worker if self.worker is not None and self.worker.alive else None
        rss, cpu = worker.usage() if worker else (None, None)
        cur = self.current
        return {
            "agent_id": self.name,
            "type": self.id.type,
            "env": self.id.env,
            "args": list(self.id.args),
            "status": self.status.value,
            "pending_invocation_count": self.pending_count,
            "current_invocation": {"idempotency_key": cur.key, "method": cur.method} if cur else None,
            "pid": worker.pid if worker else None,
            "created_at": self.created_at,
            "last_active_at": self.last_active_at,
            "completed_count": self.completed_count,
            "failed_count": self.failed_count,
            "retry_count": self.retry_count,
            "last_error": self.last_error,
            "memory_rss_bytes": rss,
            "cpu_seconds": cpu,
            # What the bounds on its output cost since the daemon started: pieces
            # of over-long lines, and bytes its log file's rotation threw away.
            "output_cut_lines": self.output.cut_lines,
            "output_dropped_bytes": self.output.file.dropped_bytes,
        }

    def invocations(self) -> list[dict[str, Any]]:
        """The running invocation, then the queue, then the scheduled ones (`agent invocations`)."""
        items = [self.current.public()] if self.current is not None else []
        items += [inv.public() for inv in self.queue]
        items += [t[2].public() for t in self.scheduled]
        return items

    def event(self, kind: str, inv: Invocation | None = None, detail: str | None = None) -> None:
        if not self.deleted:
            self.sup.store.event(self.name, time.time(), kind, inv.key if inv else None,
                                 inv.method if inv else None, detail)

    # -- the queue -------------------------------------------------------

    def enqueue(self, inv: Invocation) -> None:
        """Queue a journaled invocation (its enqueue is committed: it may run)."""
        self.active[inv.key] = inv
        if inv.status == S.SCHEDULED:
            bisect.insort(self.scheduled, (inv.schedule_at or 0.0, inv.seq, inv), key=lambda t: t[:2])
            self._arm_schedule()
        else:
            self.queue.append(inv)
            if inv.journaled:
                self.kick()  # else its commit will

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def _arm_schedule(self) -> None:
        if self._sched_timer is not None:
            self._sched_timer.cancel()
            self._sched_timer = None
        if self.scheduled and not self.deleted:
            delay = max(0.0, self.scheduled[0][0] - time.time())
            self._sched_timer = asyncio.get_running_loop().call_later(delay, self._release_due)

    def _release_due(self) -> None:
        self._sched_timer = None
        now = time.time()
        while self.scheduled and self.scheduled[0][0] <= now:
            _, _, inv = self.scheduled.pop(0)
            inv.move(S.PENDING)
            # A released invocation joins the FIFO now, so it takes a new
            # place in the order that recovery will replay.
            inv.seq = self.take_seq()
            self.sup.store.update_invocation(self.name, inv.key, status=inv.status.value, seq=inv.seq)
            self.queue.append(inv)
        self.sup.store.commit_soon()
        self._arm_schedule()
        self.kick()

    def _may_run(self) -> bool:
        return (bool(self.queue) and self.queue[0].journaled and not self.interrupted
                and not self.deleted and self.failed_error is None and not self.sup.draining)

    def ready_warm(self) -> bool:
        """Whether a call enqueued now would start at once on the warm path."""
        return (self.runner is None and self.current is None and not self.queue and not self.interrupted
                and not self.deleted and self.failed_error is None and not self.sup.draining
                and self._warm())

    def start_early(self, inv: Invocation) -> None:
        """Start an awaited call before its enqueue commits (ready_warm() holds):
        golemd.driver.supervisor journals it while the worker runs it, and withdraw()
        stops it if that fails."""
        self.active[inv.key] = inv
        self._run_warm(inv)

    def _warm(self) -> bool:
        """Whether the next call can go straight to a live worker on current code
        (not one being stopped: suspend and the control operations kill first)."""
        worker = self.worker
        return (worker is not None and worker.alive and not worker.killed
                and worker.template is self.sup.template)

    def kick(self) -> None:
        """Start the head of the queue if nothing runs: on the warm path when the
        worker is ready, else in a runner task."""
        if self.runner is not None or self.current is not None or not self._may_run():
            return
        if self._warm():
            self._run_warm(self.queue.popleft())
        else:
            self.runner = asyncio.create_task(self._run(), name=f"agent {self.name}")

    @property
    def busy(self) -> bool:
        return self.runner is not None or self.current is not None

    def settled(self) -> asyncio.Future[None]:
        """Resolved once no invocation runs (drain and shutdown wait on it)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.busy:
            self._settled.append(fut)
        else:
            fut.set_result(None)
        return fut

    def _idle(self) -> None:
        """Nothing runs and nothing more can start now."""
        if self.worker is not None and self.worker.template is not self.sup.template:
            self.suspend()  # it ran on code a reload replaced: the next call starts on the new
        self._arm_idle()
        self.sup.trim_soon()  # a burst may have left more workers than the budget
        waiting, self._settled = self._settled, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)

    def _next(self) -> None:
        self.kick()
        if not self.busy:
            self._idle()

    async def _run(self, resume: Invocation | None = None,
                   died: tuple[WorkerDied, Worker] | None = None) -> None:
        """The slow path; `resume` is a warm-path invocation whose worker died."""
        try:
            if resume is not None:
                await self._guarded(resume, died)
            while self._may_run() and not self._warm():
                await self._guarded(self.queue.popleft())
        finally:
            self.runner = None
            self._next()  # a worker is up now: what is left goes on the warm path

    async def _guarded(self, inv: Invocation, died: tuple[WorkerDied, Worker] | None = None) -> None:
        try:
            await self._execute(inv, died)
        except Exception as exc:
            self._internal_error(inv, exc)

    def _internal_error(self, inv: Invocation, exc: Exception) -> None:
        """Our bug, not the agent's: fail the invocation rather than leave it running."""
        log.exception("%s: internal error running %s", self.name, inv.key)
        if inv.status == S.RUNNING:
            self._finish(inv, S.FAILED, error=GolemError(Code.INTERNAL, f"golemd failed: {exc!r}"))

    def _run_warm(self, inv: Invocation) -> None:
        self._begin(inv)
        worker = self.worker
        assert worker is not None
        timer = None
        if inv.timeout is not None:
            timer = asyncio.get_running_loop().call_later(inv.timeout, self._time_out, worker)

        def then(reply: Any, died: WorkerDied | None) -> None:
            if timer is not None:
                timer.cancel()
            if died is None and inv.discard is not None:
                died = WorkerDied(f"its reply was discarded ({inv.discard})")
            if died is not None:
                # Retry, put back or fail: the runner's job, from the death on.
                self.runner = asyncio.create_task(self._run(inv, (died, worker)), name=f"agent {self.name}")
                return
            if self.listened:
                worker.drain_output()  # its lines reach streaming callers before its result
            store = self.sup.store
            # The next call goes to the worker before this outcome's commit and
            # reply: the worker runs it meanwhile.
            store.hold()
            try:
                self._complete(inv, reply)
            except Exception as exc:
                self._internal_error(inv, exc)
            finally:
                try:
                    self._next()
                finally:
                    store.release()

        worker.call_then(inv.method, inv.args, then)

    # -- running one invocation --------------------------------------------

    def _tell_positions(self, started: Invocation) -> None:
        """Tell streaming callers where they stand: the one starting, then those waiting."""
        for listener in started.listeners:
            listener({"type": "started"})
        for ahead, waiting in enumerate(self.queue, 1):
            for listener in waiting.listeners:
                listener({"type": "queued", "ahead": ahead})

    def _begin(self, inv: Invocation) -> None:
        inv.move(S.RUNNING)
        self.current = inv
        if self.listened:
            self._tell_positions(inv)
        inv.started_at = self.last_active_at = time.time()
        self.sup.touch(self)
        # Not journaled: recovery treats a running invocation as pending, and
        # its started_at is written with its outcome.

    async def _execute(self, inv: Invocation, died: tuple[WorkerDied, Worker] | None = None) -> None:
        if died is None:
            self._begin(inv)
        while True:
            worker: Worker | None = None
            try:
                if died is not None:
                    (exc, worker), died = died, None
                    raise exc
                worker = await self._ensure_worker()
                if self.abort is not None:
                    raise WorkerDied("stopped before the call was sent")
                call = worker.call(inv.method, inv.args)
                timer = None
                if inv.timeout is not None:
                    timer = asyncio.get_running_loop().call_later(inv.timeout, self._time_out, worker)
                try:
                    reply = await call
                finally:
                    if timer is not None:
                        timer.cancel()
                if inv.discard is not None:
                    raise WorkerDied(f"its reply was discarded ({inv.discard})")
                if self.listened:
                    worker.drain_output()  # its lines reach streaming callers before its result
            except ConstructorFailed as exc:
                self._fail_agent(exc.error, inv)
                return
            except (WorkerDied, TemplateError) as exc:
                worker = worker or self.worker
                code = await self._reap_worker(worker)
                if await self._after_death(inv, str(exc), code, worker):
                    continue
                return
            self._complete(inv, reply)
            return

    def _complete(self, inv: Invocation, reply: dict[str, Any]) -> None:
        crash_point("result")
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
        now = time.time()
        inv.move(status)
        self.current = None
        self.active.pop(inv.key, None)
        self.last_active_at = now
        if status == S.COMPLETED:
            self.completed_count += 1
            outcome = {"result": result}
        else:
            assert error is not None
            self.failed_count += 1
            self.last_error = str(error)
            outcome = {"error": error.to_wire()}
        waiters = list(inv.waiters)
        inv.waiters.clear()
        try:
            if not self.deleted:
                store = self.sup.store
                store.finish_invocation(inv.rowid, status.value, pack(outcome), now, inv.started_at)
                if snapshot_changed and self.durable:
                    self._snapshot_dirty = True
                store.write_before_commit(self.name, self._write_row_now)
                self.sup.note_finished(self)
        except GolemError as err:
            # The outcome could not be journaled: say so rather than report it.
            log.error("%s: cannot journal the outcome of %s: %s", self.name, inv.key, err)
            self._drop_unsaved_state()
            resolve(waiters, error=err)
            return

        def deliver(failed: GolemError | None) -> None:
            crash_point("finished")
            if failed is not None:
                self._drop_unsaved_state()
                resolve(waiters, error=failed)
            elif error is not None:
                resolve(waiters, error=error)
            else:
                resolve(waiters, value=result)

        self.sup.store.on_commit(deliver)

    def _write_row(self) -> None:
        """The agent's row as of now: written once per group commit, before it."""
        if self.deleted:
            return
        cols: dict[str, Any] = {"last_active_at": self.last_active_at, "completed_count": self.completed_count,
                                "failed_count": self.failed_count, "last_error": self.last_error}
        if self._snapshot_dirty:
            cols["snapshot"] = self.snapshot
            self._snapshot_dirty = False
        self.sup.store.update_agent(self.name, **cols)

    def _fail_agent(self, error: dict[str, Any], inv: Invocation | None, what: str | None = None) -> None:
        """The constructor raised, the state cannot be loaded, or the process
        dies whenever it starts: the agent is Failed until deleted."""
        if what is not None:
            message = f"{what}: {error.get('message')}"
        else:
            message = f"the constructor of {self.id.type} raised {error.get('type')}: {error.get('message')}"
        self.failed_error = {"code": Code.AGENT_FAILED.value, "message": message, "details": error}
        self.event("constructor_failed", inv, message)
        if not self.deleted:
            # Failed survives a restart, as every status does; delete clears it.
            self.sup.store.update_agent(self.name, failed_error=pack(self.failed_error))
        err = GolemError(Code.AGENT_FAILED, message, details=error)
        if inv is not None:
            self._finish(inv, S.FAILED, error=err)
        self.fail_all_pending(err)

    def fail_all_pending(self, err: GolemError) -> None:
        pending = list(self.queue) + [t[2] for t in self.scheduled]
        self.queue.clear()
        self.scheduled.clear()
        self._arm_schedule()
        for inv in pending:
            self._finish(inv, S.FAILED, error=err)
