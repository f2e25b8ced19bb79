"""golemd.perf.spin: the polling window's rule, the daemon's selector and a worker's recv,
on real sockets."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time

import pytest

from golemd.perf.spin import SpinningSelector, Window, new_event_loop, recv


def test_window_grows_after_near_misses_and_never_past_its_limit():
    w = Window(200_000)
    assert w.ns == 0  # closed until a wait shows that polling would pay
    w.adapt(150_000)  # woke soon after polling would have given up: poll next time
    assert w.ns == 10_000
    for _ in range(10):
        w.adapt(150_000)
    assert w.ns == 200_000


def test_window_shrinks_to_nothing_when_waits_are_long():
    w = Window(200_000)
    w.ns = 200_000
    seen = []
    for _ in range(10):
        w.adapt(5_000_000_000)  # a caller that comes every few seconds
        seen.append(w.ns)
    assert seen[:4] == [100_000, 50_000, 25_000, 12_500]
    assert seen[-1] == 0


def test_a_zero_limit_never_polls():
    w = Window(0)
    w.adapt(1_000)
    assert w.ns == 0


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def opened(pair):
    """A selector on `pair`'s first socket, its window open to the full 200 us."""
    sel = SpinningSelector(200_000)
    sel.window.ns = 200_000
    sel.register(pair[0], selectors.EVENT_READ)
    yield sel
    sel.close()


def test_selector_polls_when_the_event_is_there(pair, opened):
    pair[1].send(b"x")
    ready = opened.select(10.0)
    assert [key.fileobj for key, _ in ready] == [pair[0]]
    assert (opened.polled, opened.slept) == (1, 0)


def test_selector_sleeps_after_its_window_and_keeps_the_timeout(opened):
    t0 = time.monotonic()
    assert opened.select(0.05) == []
    assert time.monotonic() - t0 >= 0.045
    assert (opened.polled, opened.slept) == (0, 1)
    assert opened.window.ns == 100_000  # 50 ms is far past the limit: shrunk


def test_selector_does_not_poll_when_told_polling_cannot_pay(pair, opened):
    """busy (as many workers busy as CPUs): straight to epoll_wait."""
    opened.busy = lambda: True
    pair[1].send(b"x")
    assert len(opened.select(1.0)) == 1
    assert (opened.polled, opened.slept) == (0, 1)
    opened.busy = lambda: False
    assert len(opened.select(1.0)) == 1  # still readable: found by the poll now
    assert (opened.polled, opened.slept) == (1, 1)


def test_selector_without_a_window_only_sleeps(pair):
    a, b = pair
    sel = SpinningSelector(0)
    try:
        sel.register(a, selectors.EVENT_READ)
        b.send(b"x")
        assert len(sel.select(1.0)) == 1
        assert (sel.polled, sel.slept) == (0, 0)  # the plain epoll_wait path
    finally:
        sel.close()


@pytest.mark.parametrize("spin_ns", [200_000, 0])
def test_selector_runs_its_idle_hook_before_it_sleeps(pair, spin_ns):
    """The hook is asked at every turn; when it scheduled work, select()
    returns at once (the loop runs the work, then selects again); when it
    did nothing, select() goes on to poll and sleep, asking it again just
    before it sleeps."""
    a, b = pair
    sel = SpinningSelector(spin_ns)
    asked: list[bool] = []
    work = {"busy": True, "asleep": True}

    def hook(sleeping: bool) -> bool:
        asked.append(sleeping)
        if sleeping:
            return work["asleep"]
        return work["busy"]

    sel.on_idle = hook
    try:
        sel.register(a, selectors.EVENT_READ)
        assert sel.select(0) == [] and asked == [False]  # due work first, even when the loop only looks
        work["busy"] = False
        t0 = time.monotonic()
        assert sel.select(5.0) == []  # work just before sleeping: back at once
        assert time.monotonic() - t0 < 1.0
        assert asked[-1] is True
        work["asleep"] = False
        timer = threading.Timer(0.05, lambda: b.send(b"x"))
        timer.start()
        assert len(sel.select(5.0)) == 1  # nothing to do: slept until the event
        timer.join(5)
        assert asked[-1] is True
    finally:
        sel.close()


def test_recv_returns_what_arrives_during_the_poll_or_after_it(pair):
    a, b = pair
    a.setblocking(True)
    w = Window(200_000)
    w.ns = 200_000
    b.send(b"now")
    assert recv(a, w) == b"now"
    assert w.ns == 200_000  # ended by the poll: no change
    later = threading.Timer(0.05, lambda: b.send(b"later"))
    later.start()
    try:
        assert recv(a, w) == b"later"  # polled 200 us, then slept until it came
    finally:
        later.join(5)
    assert w.ns == 100_000
    b.close()
    assert recv(a, Window(0)) == b""  # end of file, as socket.recv


def test_the_daemons_loop_runs_on_the_polling_selector():
    loop = new_event_loop(200)
    try:
        assert isinstance(loop._selector, SpinningSelector)  # type: ignore[attr-defined]
        assert loop._selector.window.limit_ns == 200_000  # type: ignore[attr-defined]
        assert loop.run_until_complete(asyncio.sleep(0.01, "done")) == "done"
    finally:
        loop.close()
