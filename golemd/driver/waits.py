"""What durable waits are registered now (golemd.driver.durable): who waits
on whom through awaited calls, the timers of sleeps and promise deadlines,
the waiters of each promise, and each agent's suspend_after timer.

The call edges are what CALL_CYCLE is decided from: an agent runs one
invocation at a time, so an agent whose invocation waits on an awaited call
waits on its callee as a whole; a new call that would reach its own caller
along those edges would wait forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from golemd.model.states import ACTIVE

if TYPE_CHECKING:
    from golemd.model.invocation import Invocation

PromiseWaiter = tuple[Any, "Invocation", int]  # (agent, its invocation, the wait's effect number)


class Waits:
    def __init__(self) -> None:
        self.calls: dict[str, tuple[Invocation, str]] = {}  # caller -> (its waiting invocation, callee)
        self.promises: dict[str, list[PromiseWaiter]] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}  # (agent, key): a sleep, a deadline
        self._suspends: dict[str, asyncio.TimerHandle] = {}  # agent -> its suspend_after timer

    def registered(self, name: str, inv: Invocation) -> bool:
        """Whether the wait of `inv` (agent `name`) is registered."""
        if self.calls.get(name, (None,))[0] is inv or (name, inv.key) in self._timers:
            return True
        pid = (inv.waiting_for or {}).get("promise")
        return pid is not None and any(w[1] is inv for w in self.promises.get(pid, ()))

    def call(self, name: str, inv: Invocation, callee: str) -> None:
        self.calls[name] = (inv, callee)

    def calling(self, name: str, inv: Invocation) -> bool:
        return self.calls.get(name, (None,))[0] is inv

    def promise(self, pid: str, waiter: PromiseWaiter) -> None:
        self.promises.setdefault(pid, []).append(waiter)

    def take_promise(self, pid: str) -> list[PromiseWaiter]:
        return self.promises.pop(pid, [])

    def timer(self, name: str, inv: Invocation, delay: float, fire: Callable[[], None]) -> None:
        slot = (name, inv.key)
        old = self._timers.pop(slot, None)
        if old is not None:
            old.cancel()

        def due() -> None:
            if self._timers.get(slot) is handle:
                del self._timers[slot]
            fire()

        handle = asyncio.get_running_loop().call_later(max(0.0, delay), due)
        self._timers[slot] = handle

    def suspend(self, name: str, after: float, fire: Callable[[], None]) -> None:
        old = self._suspends.pop(name, None)
        if old is not None:
            old.cancel()

        def due() -> None:
            self._suspends.pop(name, None)
            fire()

        self._suspends[name] = asyncio.get_running_loop().call_later(after, due)

    def forget(self, name: str, inv: Invocation) -> None:
        """The wait of `inv` is over (or will be registered again)."""
        if self.calls.get(name, (None,))[0] is inv:
            del self.calls[name]
        for table, slot in ((self._timers, (name, inv.key)), (self._suspends, name)):
            handle = table.pop(slot, None)  # type: ignore[arg-type]
            if handle is not None:
                handle.cancel()
        pid = (inv.waiting_for or {}).get("promise")
        waits = self.promises.get(pid) if pid is not None else None
        if waits:
            waits[:] = [w for w in waits if w[1] is not inv]

    def forget_agent(self, name: str, agent: Any) -> None:
        """The agent is deleted: its waits go (what it called runs on)."""
        self.calls.pop(name, None)
        for slot in [s for s in self._timers if s[0] == name]:
            self._timers.pop(slot).cancel()
        suspend = self._suspends.pop(name, None)
        if suspend is not None:
            suspend.cancel()
        for pid, waits in list(self.promises.items()):
            waits[:] = [w for w in waits if w[0] is not agent]
            if not waits:
                del self.promises[pid]

    def cycle(self, caller: str, callee: str) -> list[str] | None:
        """The agents a call from `caller` to `callee` would wait through back
        to `caller`, or None when it closes no cycle."""
        path = [caller, callee]
        node = callee
        while node != caller:
            edge = self.calls.get(node)
            if edge is None or edge[0].status not in ACTIVE or edge[0].waiting_for is None:
                return None
            node = edge[1]
            if node in path[1:]:
                return None  # a cycle that does not pass through the caller: not this call's
            path.append(node)
        return path
