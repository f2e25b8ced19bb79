"""Poll briefly before sleeping: the daemon's event loop and each worker.

A warm call is a ping-pong: the daemon writes to a worker, the reply comes
some 10-30 us later, the daemon answers its client and the next request
comes as soon again. Sleeping through each of those gaps costs more than the
gap itself wherever waking an idle CPU is slow: on a virtual machine an idle
vCPU halts and is woken by the host (25-30 us per wake-up on the 2-core KVM
guest the benchmarks ran on, four times per call), and on bare metal a deep
C-state takes as long. So before it sleeps, the daemon's loop polls
(epoll_wait without a timeout) and a worker that has just answered polls its
control socket, yielding the CPU between polls, for up to a window of
`spin_us`: what the kernel's haltpoll does for a guest's idle vCPU, done
where the wake-up is expected.

The window adapts, by haltpoll's rule: it grows when the wake-up came soon
after a poll gave up, and shrinks when it came much later than the limit, so
a process whose messages come seldom soon stops polling at all, and an idle
daemon sleeps in epoll_wait as any other. Polling yields at every turn, so a
task that wants the CPU gets it. `spin_us = 0` turns it off.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

_GROW_START_NS = 10_000
_clock = time.perf_counter_ns


class Window:
    """How long to poll next time, adapted to how long the waits turn out.

    It starts closed and opens only once a wait has ended soon after it
    began: a worker whose agent is called once (most of them, when 10,000
    agents are each invoked once) polls at most 10 us, once."""

    def __init__(self, limit_ns: int):
        self.limit_ns = max(0, limit_ns)
        self.ns = 0

    def adapt(self, waited_ns: int) -> None:
        """After a wait that polling did not end: grow when it ended soon after, shrink when far after."""
        if waited_ns <= self.limit_ns:
            self.ns = min(self.limit_ns, max(self.ns * 2, _GROW_START_NS))
        else:
            self.ns //= 2
            if self.ns < _GROW_START_NS:
                self.ns = 0


class SpinningSelector(selectors.EpollSelector):
    """The daemon's selector. `on_idle(sleeping)` is called at every turn of the
    loop and of the poll, with `sleeping` True just before epoll_wait would
    block; when it returns True it has scheduled work, and select() returns at
    once so that the loop runs it (Store.idle: commits that may wait a little)."""

    def __init__(self, spin_ns: int):
        super().__init__()
        self.window = Window(spin_ns)
        self.on_idle: Callable[[bool], bool] | None = None
        # Whether polling cannot pay now: while as many workers are busy as
        # there are CPUs, they need every CPU, and a polling daemon (whose CPU
        # never goes idle, so the kernel never moves a waiting worker onto it)
        # would only slow them down. The reply comes soon enough anyway.
        self.busy: Callable[[], bool] | None = None
        self.polled = 0  # waits that polling ended (for the tests)
        self.slept = 0  # waits that ended in epoll_wait

    def _idle(self, sleeping: bool) -> bool:
        return self.on_idle is not None and self.on_idle(sleeping)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self._idle(False):
            return []
        if timeout is not None and timeout <= 0:
            return super().select(timeout)  # work is ready: only look
        if self.window.limit_ns <= 0:
            return [] if self._idle(True) else super().select(timeout)
        start = _clock()
        window = self.window.ns
        if window and self.busy is not None and self.busy():
            window = 0
        if timeout is not None:
            window = min(window, int(timeout * 1e9))
        if window > 0:
            poll = super().select
            end = start + window
            while True:
                ready = poll(0)
                if ready:
                    self.polled += 1
                    return ready
                if _clock() >= end:
                    break
                if self._idle(False):
                    return []
                os.sched_yield()  # a task woken onto this CPU runs now, not after the poll
            if timeout is not None:
                timeout = max(0.0, timeout - (_clock() - start) / 1e9)
        if self._idle(True):
            return []
        ready = super().select(timeout)
        self.slept += 1
        self.window.adapt(_clock() - start)
        return ready


def hook_loop(loop: Any, on_idle: Callable[[bool], bool], busy: Callable[[], bool]) -> bool:
    """Give `loop`'s selector its hooks (SpinningSelector.on_idle, .busy).
    False when its selector is not ours."""
    selector = getattr(loop, "_selector", None)
    if not isinstance(selector, SpinningSelector):
        return False
    selector.on_idle = on_idle
    selector.busy = busy
    return True


def new_event_loop(spin_us: float) -> Any:
    """The daemon's event loop: asyncio's own, on a polling selector."""
    import asyncio

    return asyncio.SelectorEventLoop(SpinningSelector(int(spin_us * 1000)))


def recv(sock: socket.socket, window: Window, size: int = 1 << 16, readable: Any = None) -> bytes:
    """A blocking socket's recv, polled for `window` first (a worker awaiting its next call).
    `readable`: a select.poll registered for the socket's POLLIN, waited on
    before the read. A blocking recv on a Unix stream socket is woken as well
    whenever the peer reads what this side wrote (the kernel's write-space
    wake-up ignores what the sleeper waits for), so a worker blocked in recv
    wakes once more per call for nothing; poll filters that one out."""
    start = _clock()
    if window.ns > 0:
        end = start + window.ns
        while True:
            try:
                return sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
            if _clock() >= end:
                break
            os.sched_yield()
    if readable is None:
        data = sock.recv(size)
    else:
        while True:
            readable.poll()
            try:
                data = sock.recv(size, socket.MSG_DONTWAIT)
                break
            except BlockingIOError:
                pass
    window.adapt(_clock() - start)
    return data
