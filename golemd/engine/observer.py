"""What the engine tells an observer (metrics, traces): facts that have
happened, never a question. The engine calls it only when one is set
(EngineContext.observer), so a daemon nobody watches pays one attribute
test per event and nothing more.

Times are the engine's clock (wall seconds, EngineContext.clock), the same
that is journaled: an invocation's created_at, started_at and the
finished_at written with its outcome.
"""

from __future__ import annotations

from typing import Protocol

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
