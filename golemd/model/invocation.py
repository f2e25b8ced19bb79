"""One invocation as the supervisor holds it, and how its callers are answered."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from golemd.model.errors import GolemError
from golemd.model.states import InvocationStatus, check_transition

Listener = Callable[[dict[str, Any]], None]
# Told the outcome: (result, None) or (None, error). A plain callback rather
# than a future, so that an outcome reaches the caller's socket in the same
# loop round as its commit.
Waiter = Callable[[Any, "GolemError | None"], None]

log = logging.getLogger("golemd.invocation")


@dataclass(eq=False, slots=True)
class Invocation:
    key: str
    method: str
    args: list[Any]
    args_packed: bytes
    seq: int
    created_at: float
    status: InvocationStatus
    schedule_at: float | None = None
    timeout: float | None = None
    started_at: float | None = None
    attempts: int = 0
    waiters: list[Waiter] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    # Whether its enqueue is committed: a queued invocation must not start
    # before (those in the queue are journaled in order, so only the head needs
    # looking at). An early one (Agent.start_early) runs meanwhile.
    journaled: bool = True
    rowid: int = 0  # its row in the store, once inserted (0: none)
    # Why its worker's reply must not count: "refused" (its enqueue failed: it
    # never existed) or "unsaved" (an earlier outcome's commit failed, so the
    # worker's state is not the saved one: it runs again from that).
    discard: str | None = None
    call_id: int = 0  # the id of its latest send to a worker (0: none)
    # Durable execution (golemd.driver.durable): its effects journaled so far,
    # [kind, request, result or None] by number, sent with it to a worker that
    # runs it again; what it waits on now ({"agent", "idempotency_key"},
    # {"promise"} or {"until"}), None when it waits on nothing; and the effect
    # its present worker is blocked on (None: none, or that worker is gone).
    journal: list[list[Any]] | None = None
    waiting_for: dict[str, Any] | None = None
    live_seq: int | None = None
    # For observers (golemd.engine.observer; traces): the parent it was admitted
    # with, (trace ID, span ID, flags) of another agent's effect or of a
    # traceparent (golemd.model.tracecontext); when its latest durable effect
    # was asked; the error it failed with.
    trace_parent: tuple[int, int, int] | None = None
    effect_at: float | None = None
    error: GolemError | None = None

    def move(self, new: InvocationStatus) -> None:
        self.status = check_transition(self.status, new)

    def public(self) -> dict[str, Any]:
        return {"idempotency_key": self.key, "method": self.method, "args": self.args,
                "status": self.status.value, "created_at": self.created_at,
                "schedule_at": self.schedule_at}


def resolve(waiters: list[Waiter], value: Any = None, error: GolemError | None = None) -> None:
    """Answer every awaiting caller, once: the list is emptied first."""
    todo = waiters[:]
    waiters.clear()
    for waiter in todo:
        try:
            waiter(None, error) if error is not None else waiter(value, None)
        except Exception:
            # One caller's broken callback must not keep the others waiting.
            log.exception("answering a caller failed")
