"""What the engine knows of one agent, and the edges every part of it uses:
starting an invocation, sending it, bringing a worker up, stopping it,
arming timers. The layers above only call down: golemd.engine.running (the
queue and outcomes), then golemd.engine.agent (the worker's life, timers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from golemd.engine.context import EngineContext
from golemd.engine.effects import (
    STOP_NOW,
    STOP_POLITELY,
    Arm,
    Effect,
    Send,
    Spawn,
    StopReason,
    Timer,
    WorkerState,
)
from golemd.engine.journal import Journal
from golemd.engine.queue import PendingQueue
from golemd.model.invocation import Invocation
from golemd.model.states import AgentStatus, InvocationStatus, derive_agent_status

S = InvocationStatus
W = WorkerState
HELD = {"type": "held", "reason": "interrupted"}


class AgentState:
    # Slots: one engine per agent, 10,000 and more in a daemon, and an
    # instance dict of this many attributes costs three times as much.
    __slots__ = ("ctx", "store", "name", "type_name", "durable", "created_at", "last_active_at",
                 "completed_count", "failed_count", "retry_count", "last_error", "interrupted", "failed_error",
                 "snapshot", "fin", "_write_row_now", "next_seq", "queue", "current", "deleted",
                 "retrying", "stop_reason", "worker", "worker_generation", "_worker_lost", "_worker_stopped",
                 "_worker_built", "_current_sent", "drops_pending", "cancels_pending", "polling", "start_failures", "listened",
                 "_armed", "out", "on_effects")

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
        # The newest finish number given out (Journal.finish_invocation's
        # `fin`); the row, rolled forward, holds the newest it took in.
        self.fin: int = row.get("fin_upto", 0)
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
        self._worker_built = False  # its agent was built (worker_ready)
        # Whether the current invocation is in the present worker's hands (sent
        # to it, or waiting for it to start): else that worker's death is not
        # the invocation's (it began while the worker was dying).
        self._current_sent = False
        # Drops written to the worker whose fate is not known yet: nothing more
        # is sent ahead meanwhile, so that every call sent ahead is one the
        # worker drops with them, or none is (golemd.engine.running).
        self.drops_pending: set[Invocation] = set()
        # Queued invocations whose cancel is not committed yet: nothing queued
        # starts or is sent ahead meanwhile, so that if the commit fails the
        # invocation goes again in its place, before those enqueued after it.
        self.cancels_pending: set[Invocation] = set()
        self.polling = False  # the driver reads the worker's socket after a drop: send nothing ahead
        self.start_failures = 0  # consecutive worker deaths before the agent was built
        self.listened = 0  # how many queued invocations have streaming callers
        self._armed: set[Timer] = set()
        self.out: list[Effect] = []
        # Told when effects were asked for outside a call from the driver (in
        # a commit's callback), so that they are carried out now, not at the
        # agent's next event. None: the driver takes them after its own calls.
        self.on_effects: Callable[[], None] | None = None

    def _write_row(self) -> None:
        """The agent's row as of now: written once per group commit, before it,
        or a little later (golemd.storage.rollforward)."""
        if self.deleted:
            return
        cols: dict[str, Any] = {"last_active_at": self.last_active_at, "completed_count": self.completed_count,
                                "failed_count": self.failed_count, "last_error": self.last_error,
                                "fin_upto": self.fin}
        if self.durable:
            # Whole, every time: the rows its fin_upto takes in may be the only
            # ones that hold this state, and a write may yet be rolled back.
            # (Written a second after a run of completions, not per call.)
            cols["snapshot"] = self.snapshot
        self.store.update_agent(self.name, **cols)

    def take(self) -> list[Effect]:
        """The effects asked for since the last take, oldest first."""
        out, self.out = self.out, []
        return out

    # -- facts -------------------------------------------------------------

    @property
    def status(self) -> AgentStatus:
        return derive_agent_status(
            failed=self.failed_error is not None, interrupted=self.interrupted,
            retrying=self.retrying, running=self.current is not None and not self.parked,
            worker_alive=self.worker_alive)

    @property
    def parked(self) -> bool:
        """The current invocation waits (durable execution) with no worker of
        its own: it is sent again, to replay up to its wait, once the wait ends."""
        cur = self.current
        return cur is not None and cur.waiting_for is not None and not self._current_sent

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
        fifo = self.queue.fifo
        return bool(fifo) and fifo[0].journaled and not self.cancels_pending and self._may_start()

    def _may_start(self) -> bool:
        """Whether anything may start now, whatever the queue holds."""
        return not self.interrupted and not self.deleted and self.failed_error is None and not self.ctx.draining

    def ready_warm(self) -> bool:
        """Whether a call enqueued now would be sent to the worker at once."""
        return (self.current is None and not self.queue.fifo and not self.queue.ahead and not self.interrupted
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

    def arm_schedule(self) -> None:
        due = self.queue.next_due()
        if due is None or self.deleted:
            self._arm(Timer.SCHEDULE, None)
        else:
            self._arm(Timer.SCHEDULE, max(0.0, due - self.ctx.clock()))

    def arm_idle(self) -> None:
        """Suspend after idle_timeout without a call. One timer per idle spell,
        not per call: when it fires early it re-arms for what is left."""
        if self.worker is W.ABSENT or self.deleted or self.ctx.policy.idle_timeout <= 0:
            self._arm(Timer.IDLE, None)
            return
        if Timer.IDLE not in self._armed:
            self._arm(Timer.IDLE, self.ctx.policy.idle_timeout)

    def _tell_positions(self, started: Invocation) -> None:
        """Tell streaming callers where they stand: the one starting, then those waiting."""
        for listener in started.listeners:
            listener({"type": "started"})
        for ahead, waiting in enumerate(self.queue.fifo, 1):
            for listener in waiting.listeners:
                listener({"type": "queued", "ahead": ahead})

    def tell_held(self, invs: Iterable[Invocation]) -> None:
        """Tell the streaming callers of these queued invocations that they
        wait for a resume: the agent is interrupted (docs/protocol.md, `held`)."""
        if self.interrupted and self.listened:
            for inv in invs:
                for listener in inv.listeners:
                    listener(HELD)

    def _begin(self, inv: Invocation) -> None:
        inv.move(S.RUNNING)
        self.current = inv
        if self.listened:
            self._tell_positions(inv)
        first = inv.started_at is None
        # Not journaled: recovery treats a running invocation as pending, and
        # its started_at is written with its outcome.
        inv.started_at = self.last_active_at = self.ctx.clock()
        self._current_sent = False
        if first and self.ctx.observer is not None:
            self.ctx.observer.started(self.name, self.type_name, inv)

    def _send(self, inv: Invocation) -> None:
        self._current_sent = True
        self.out.append(Send(inv))
        if inv.timeout is not None:
            self._arm(Timer.TIMEOUT, inv.timeout)

    def _bring_up(self) -> None:
        """Get a worker for the current invocation: it is sent once one is ready.
        None while it waits on a durable effect: it is parked until the wait ends."""
        cur = self.current
        if cur is not None and cur.waiting_for is not None:
            self._current_sent = False
            return
        if self.worker is W.ABSENT:
            self.worker = W.STARTING
            self.worker_generation = self.ctx.generation
            self._worker_lost = self._worker_stopped = self._worker_built = False
            self._current_sent = True
            self.out.append(Spawn(self.snapshot if self.durable else None))
        elif self.worker is W.READY:
            self.stop_worker(now=True)  # on replaced code: the next one starts on the new
        # STARTING: worker_ready sends it; DYING: worker_exited starts the next

    def warm_up(self) -> bool:
        """Start a worker with nothing to run (agent new: its constructor
        runs now). False when there is nothing to start (one runs or starts
        already, or the agent is failed or deleted)."""
        if self.worker is not W.ABSENT or self.current is not None or self.failed_error is not None or self.deleted:
            return False
        self._bring_up()
        return True

    def stop_worker(self, now: bool) -> None:
        if self.worker is W.ABSENT:
            return
        if self.worker is W.DYING and not now:
            return  # being stopped already
        self.worker = W.DYING
        self._worker_stopped = True
        self.out.append(STOP_NOW if now else STOP_POLITELY)
