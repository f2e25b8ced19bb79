"""kill -9 the daemon at random moments while several clients trigger
invocations with unique keys; after the restarts, every acknowledged
invocation ran exactly once on the agent's state, in order per agent."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.helpers import DaemonProc, RawConn, wait_for

pytestmark = pytest.mark.slow

CLIENTS = 4
KILLS = 3


def _client(d: DaemonProc, n: int, acked: list[str], stop: threading.Event) -> None:
    """Send keys one after another until told to stop; each key until it is acknowledged."""
    agent = f'Journal("audit{n % 2}")'
    conn: RawConn | None = None
    i = 0
    while not stop.is_set():
        key = f"c{n}-{i:05d}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = RawConn(d.socket, timeout=10)
                r = conn.call("invoke", agent=agent, method="append", args=[key], mode="trigger",
                              idempotency_key=key)
            except OSError:
                # The daemon is down: not acknowledged; send the same key again.
                conn = None
                time.sleep(0.02)
                continue
            if "error" not in r:
                acked.append(key)
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"{key} was never acknowledged")
        i += 1
    if conn is not None:
        conn.close()


def test_kill_9_under_load_loses_and_duplicates_nothing():
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    d = DaemonProc().start()
    acked: list[list[str]] = [[] for _ in range(CLIENTS)]
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(d, n, acked[n], stop)) for n in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.4))
            d.kill9()
            d.assert_no_strays()
            d.start()
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), f"clients hung (seed {seed})"
        assert all(len(a) > 10 for a in acked), f"a client made no progress: {[len(a) for a in acked]}"
        c = d.conn()
        agents = ['Journal("audit0")', 'Journal("audit1")']
        wait_for(lambda: all(c.meta(a).get("pending_invocation_count") == 0
                             and c.meta(a).get("status") != "Running" for a in agents), 60,
                 what="the queues to drain")
        entries = {a: c.ok("invoke", agent=a, method="all")["result"] for a in agents}
        c.close()
        for n in range(CLIENTS):
            agent = agents[n % 2]
            mine = [e for e in entries[agent] if e.startswith(f"c{n}-")]
            assert len(mine) == len(set(mine)), f"duplicates for client {n} (seed {seed})"
            # A client resends a key until it is acknowledged, so its keys ran
            # exactly once each, in the order it sent them.
            assert mine == acked[n], f"client {n}: lost or reordered (seed {seed})"
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if d.proc.poll() is None:
            d.stop()
        d.assert_no_strays()
