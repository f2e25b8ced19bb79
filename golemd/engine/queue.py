"""An agent's pending invocations: the FIFO, the scheduled ones in due order,
and every unfinished invocation by idempotency key."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator

from golemd.model.invocation import Invocation
from golemd.model.states import InvocationStatus as S


def _due(t: tuple[float, int, Invocation]) -> tuple[float, int]:
    return t[0], t[1]


class PendingQueue:
    __slots__ = ("fifo", "ahead", "scheduled", "active")

    def __init__(self) -> None:
        self.fifo: deque[Invocation] = deque()
        # Sent to the worker behind the running one, not started yet: pending
        # still, and cancelable (golemd.engine.control.cancel drops them).
        # A list: never longer than the batch (16), where a deque is 600
        # bytes even when empty, in every one of 10,000 agents.
        self.ahead: list[Invocation] = []
        self.scheduled: list[tuple[float, int, Invocation]] = []  # (due, seq, inv), soonest first
        # Every unfinished invocation (queued, scheduled, running), by key.
        self.active: dict[str, Invocation] = {}

    def __len__(self) -> int:
        """The pending count: queued, sent ahead and scheduled (not the running one)."""
        return len(self.fifo) + len(self.ahead) + len(self.scheduled)

    def add(self, inv: Invocation) -> None:
        self.active[inv.key] = inv
        if inv.status == S.SCHEDULED:
            bisect.insort(self.scheduled, (inv.schedule_at or 0.0, inv.seq, inv), key=_due)
        else:
            self.fifo.append(inv)

    def head(self) -> Invocation | None:
        return self.fifo[0] if self.fifo else None

    def next_due(self) -> float | None:
        return self.scheduled[0][0] if self.scheduled else None

    def take_due(self, now: float) -> list[Invocation]:
        """The scheduled invocations due by `now`, soonest first, out of the schedule."""
        due = []
        while self.scheduled and self.scheduled[0][0] <= now:
            due.append(self.scheduled.pop(0)[2])
        return due

    def restore_ahead(self) -> None:
        """What was sent ahead goes back to the front of the queue, in order."""
        if self.ahead:
            self.fifo.extendleft(reversed(self.ahead))
            self.ahead.clear()

    def unsend_from(self, inv: Invocation) -> None:
        """`inv` and what was sent after it go back to the front of the queue."""
        tail: list[Invocation] = []
        while self.ahead:
            last = self.ahead.pop()
            tail.append(last)
            if last is inv:
                break
        self.fifo.extendleft(tail)

    def remove(self, inv: Invocation) -> bool:
        """Take a queued or scheduled invocation out (not out of `active`). One
        sent ahead takes those sent after it back to the front of the queue:
        the worker drops them with it, and they are sent again in order."""
        if inv in self.ahead:
            self.unsend_from(inv)
            self.fifo.popleft()  # inv itself
            return True
        if inv.status == S.SCHEDULED:
            before = len(self.scheduled)
            self.scheduled = [t for t in self.scheduled if t[2] is not inv]
            return len(self.scheduled) != before
        try:
            self.fifo.remove(inv)
        except ValueError:
            return False
        return True

    def take_all(self) -> list[Invocation]:
        """Empty the queue and the schedule; what was in them, queued first."""
        pending = list(self.ahead) + list(self.fifo) + [t[2] for t in self.scheduled]
        self.ahead.clear()
        self.fifo.clear()
        self.scheduled.clear()
        return pending

    def waiting(self) -> Iterator[Invocation]:
        """Sent ahead, queued, then scheduled: the order they run in."""
        yield from self.ahead
        yield from self.fifo
        for t in self.scheduled:
            yield t[2]
