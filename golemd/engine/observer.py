"""What the engine tells an observer (metrics, traces): facts that have
happened, never a question. The engine calls it only when one is set
(EngineContext.observer), so a daemon nobody watches pays one attribute
test per event and nothing more.

Times are the engine's clock (wall seconds, EngineContext.clock), the same
that is journaled: an invocation's created_at, started_at and the
finished_at written with its outcome.

An observer must not raise: it is told from inside the commit callbacks that
answer callers.
"""

from __future__ import annotations

from typing import Any, Protocol

from golemd.model.invocation import Invocation


class Observer(Protocol):
    def started(self, agent: str, type_name: str, inv: Invocation) -> None:
        """`inv` started for the first time (not again after a death or a
        put-back): its queue wait ends at inv.started_at."""
        ...

    def ended(self, agent: str, type_name: str, inv: Invocation, outcome: str,
              finished_at: float, committed_at: float) -> None:
        """`inv`'s outcome ("completed", "failed" or "canceled") is committed:
        it finished at finished_at (what is journaled) and its commit was
        done at committed_at. Told once per invocation, and never of an
        outcome whose commit failed."""
        ...

    def worker_started(self, type_name: str) -> None:
        """A worker process exists for an agent of this type (it is being built)."""
        ...

    def worker_died(self, type_name: str) -> None:
        """A worker died by itself: golemd had not asked it to stop."""
        ...

    def retried(self, type_name: str) -> None:
        """An invocation whose worker died is retried after a backoff."""
        ...

    def effect_done(self, agent: str, type_name: str, inv: Invocation, seq: int, kind: str,
                    started_at: float, ended_at: float, request: dict[str, Any],
                    error: str | None) -> None:
        """Durable effect `seq` of `inv` (its kind as journaled: call, trigger,
        step, sleep, wait, promise, complete) was asked at started_at and its
        result journaled by ended_at; `request` is what was asked, `error`
        the code of an error result (a callee's failure, a wait's TIMEOUT),
        None for a value. Told by golemd.driver.durable, once per effect (not
        for one replayed from the journal), before `inv` ends."""
        ...


class Fanout:
    """Several observers told as one (metrics and traces both on), in order."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def started(self, agent: str, type_name: str, inv: Invocation) -> None:
        for o in self.observers:
            o.started(agent, type_name, inv)

    def ended(self, agent: str, type_name: str, inv: Invocation, outcome: str,
              finished_at: float, committed_at: float) -> None:
        for o in self.observers:
            o.ended(agent, type_name, inv, outcome, finished_at, committed_at)

    def worker_started(self, type_name: str) -> None:
        for o in self.observers:
            o.worker_started(type_name)

    def worker_died(self, type_name: str) -> None:
        for o in self.observers:
            o.worker_died(type_name)

    def retried(self, type_name: str) -> None:
        for o in self.observers:
            o.retried(type_name)

    def effect_done(self, agent: str, type_name: str, inv: Invocation, seq: int, kind: str,
                    started_at: float, ended_at: float, request: dict[str, Any],
                    error: str | None) -> None:
        for o in self.observers:
            o.effect_done(agent, type_name, inv, seq, kind, started_at, ended_at, request, error)


def combine(*observers: Observer | None) -> Observer | None:
    """The observer to set for these (None: off): None when there is none, so
    that a daemon nobody watches pays nothing; one as itself; more in a Fanout."""
    present = [o for o in observers if o is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else Fanout(*present)
