"""kill -9 of one node of three, four times (each restarted), while clients
on all three sockets trigger invocations with unique keys on agents shared
between them: every acknowledged invocation ran exactly once, in causal
order (one acknowledged before another was sent runs first), whichever
node took the agents over."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.cluster.conftest import Cluster
from tests.helpers import RawConn, wait_for

pytestmark = pytest.mark.slow

CLIENTS = 6
AGENTS = 3
KILLS = 4


class Client(threading.Thread):
    def __init__(self, cluster: Cluster, n: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cluster, self.n, self.stop = cluster, n, stop
        self.agent = f'Journal("chaos{n % AGENTS}")'
        self.node = n % 3
        self.acked: list[tuple[str, float, float]] = []  # key, sent, acknowledged
        self.error: str | None = None

    def run(self) -> None:
        conn: RawConn | None = None
        i = 0
        try:
            while not self.stop.is_set():
                key = f"c{self.n}-{i:05d}"
                sent = time.monotonic()
                deadline = sent + 90
                while True:
                    if time.monotonic() > deadline:
                        self.error = f"{key} was never acknowledged"
                        return
                    try:
                        if conn is None:
                            conn = RawConn(self.cluster.nodes[self.node].socket, timeout=30)
                        r = conn.call("invoke", agent=self.agent, method="append", args=[key],
                                      mode="trigger", idempotency_key=key)
                    except OSError:
                        # its node is down: not acknowledged; the same key through the next node
                        conn = None
                        self.node = (self.node + 1) % 3
                        time.sleep(0.05)
                        continue
                    if "error" not in r:
                        self.acked.append((key, sent, time.monotonic()))
                        break
                    time.sleep(0.05)
                i += 1
        finally:
            if conn is not None:
                conn.close()


def test_kill_9_of_nodes_under_load_loses_duplicates_and_reorders_nothing(cluster: Cluster) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    stop = threading.Event()
    clients = [Client(cluster, n, stop) for n in range(CLIENTS)]
    for c in clients:
        c.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 1.5))
            victim = rng.randrange(3)
            cluster.nodes[victim].kill9()
            time.sleep(rng.uniform(0.1, 1.0))
            cluster.nodes[victim].start()
        time.sleep(1.0)
    finally:
        stop.set()
        for c in clients:
            c.join(120)
    assert not any(c.is_alive() for c in clients), f"clients hung (seed {seed})\n{cluster.logs()}"
    assert [c.error for c in clients] == [None] * CLIENTS, f"seed {seed}\n{cluster.logs()}"
    assert all(len(c.acked) > 5 for c in clients), [len(c.acked) for c in clients]
    conn = cluster.conn(0)
    agents = [f'Journal("chaos{i}")' for i in range(AGENTS)]
    wait_for(lambda: all(conn.meta(a).get("pending_invocation_count") == 0
                         and conn.meta(a).get("status") != "Running" for a in agents), 90,
             what="the queues to drain")
    entries = {a: conn.ok("invoke", agent=a, method="all")["result"] for a in agents}
    conn.close()
    for agent in agents:
        got = entries[agent]
        assert len(got) == len(set(got)), f"{agent}: duplicates (seed {seed})"
        acked = [k for c in clients if c.agent == agent for k in c.acked]
        position = {key: i for i, key in enumerate(got)}
        missing = [k for k, _, _ in acked if k not in position]
        assert not missing, f"{agent}: acknowledged but lost: {missing[:5]} (seed {seed})"
        # causal order: X acknowledged before Y was sent runs before Y
        by_ack = sorted(acked, key=lambda k: k[2])
        by_sent = sorted(acked, key=lambda k: k[1])
        latest = -1  # the furthest position among those acknowledged before the one looked at was sent
        j = 0
        for key, sent, _ in by_sent:
            while j < len(by_ack) and by_ack[j][2] < sent:
                latest = max(latest, position[by_ack[j][0]])
                j += 1
            assert position[key] > latest, f"{agent}: {key} ran before one acknowledged before it was sent " \
                                           f"(seed {seed})"
