"""Three nodes: every node's socket reaches an agent's owner; the seed's
cancel workflow across nodes; list and status see the whole cluster; a
node's death moves its agents, queues included, and a caller on another
node gets its outcome; a node paused past its lease loses its agents and
cannot write for them again."""

from __future__ import annotations

import threading
import time

import pytest

from tests.cluster.conftest import LEASE, Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
S = 'SlowAgent("c1")'


def owner(c: Cluster, agent: str, via: int = 0) -> str:
    conn = c.conn(via)
    try:
        return str(conn.ok("get", agent=agent)["agent"]["node"])
    finally:
        conn.close()


def test_every_socket_reaches_the_owner(cluster: Cluster) -> None:
    conns = [cluster.conn(i) for i in range(3)]
    results = [conns[i % 3].ok("invoke", agent='CounterAgent("x")', method="increment")["result"]
               for i in range(9)]
    assert results == list(range(1, 10))  # one agent, one queue, whichever node was asked
    nodes = {c.ok("get", agent='CounterAgent("x")')["agent"]["node"] for c in conns}
    assert nodes == {"n0"}  # placed on the node that got the first call, seen so from every node
    status = conns[2].ok("status")
    assert status["cluster"]["node"] == "n2"
    assert [(n["node"], n["alive"]) for n in status["cluster"]["nodes"]] == [("n0", True), ("n1", True),
                                                                          ("n2", True)]
    for i in range(3):
        conns[i].ok("invoke", agent=f'CounterAgent("on{i}")', method="increment")
    listed = [a["agent_id"] for a in conns[1].ok("list")["agents"]]
    assert listed == sorted(['CounterAgent("x")', 'CounterAgent("on0")', 'CounterAgent("on1")',
                             'CounterAgent("on2")'])
    page = conns[0].ok("list", limit=2)
    assert len(page["agents"]) == 2 and page["next"] == page["agents"][-1]["agent_id"]
    rest = conns[0].ok("list", after=page["next"])
    assert [a["agent_id"] for a in page["agents"] + rest["agents"]] == listed and rest["next"] is None
    for c in conns:
        c.close()


def test_seed_cancel_workflow_on_another_node(cluster: Cluster) -> None:
    a, b = cluster.conn(0), cluster.conn(1)
    a.ok("invoke", agent=S, method="work", args=[30, "busy"], mode="trigger", idempotency_key="busy")
    wait_for(lambda: (b.meta(S).get("current_invocation") or {}).get("idempotency_key") == "busy",
             what="busy to start")
    assert b.meta(S)["node"] == "n0"
    r = b.ok("invoke", agent=S, method="work", args=[0.1, "batch"], mode="trigger",
             idempotency_key="my-batch-job")
    assert r["idempotency_key"] == "my-batch-job" and r["status"] == "pending"
    assert b.meta(S)["pending_invocation_count"] == 1
    r = b.ok("cancel", agent=S, idempotency_key="my-batch-job")
    assert r["idempotency_key"] == "my-batch-job" and r["canceled"] is True
    assert b.meta(S)["pending_invocation_count"] == 0
    assert b.err("cancel", agent=S, idempotency_key="busy") == "TOO_LATE"
    assert b.err("invoke", agent=S, method="work", args=[0.1, "batch"], idempotency_key="my-batch-job") == "CANCELED"
    b.ok("interrupt", agent=S)
    wait_for(lambda: a.meta(S)["status"] == "Interrupted", what="the interrupt")
    a.close()
    b.close()


def test_a_dead_nodes_agents_move_with_their_queues(cluster: Cluster) -> None:
    a, c = cluster.conn(0), cluster.conn(2)
    a.ok("invoke", agent='Journal("j")', method="slow_append", args=["first", 3.0], mode="trigger",
         idempotency_key="first")
    wait_for(lambda: a.meta('Journal("j")').get("current_invocation"), what="first to start")
    for key in ("k1", "k2", "k3"):
        c.ok("invoke", agent='Journal("j")', method="append", args=[key], mode="trigger", idempotency_key=key)
    assert c.meta('Journal("j")')["node"] == "n0"
    # an awaited caller on another node, waiting while the owner dies
    result: dict[str, object] = {}
    waiter = cluster.conn(1)

    def wait() -> None:
        result.update(waiter.call("invoke", agent='Journal("j")', method="append", args=["awaited"],
                                  idempotency_key="awaited"))

    t = threading.Thread(target=wait)
    t.start()
    wait_for(lambda: c.meta('Journal("j")')["pending_invocation_count"] == 4, what="awaited to be queued")
    a.close()
    cluster.nodes[0].kill9()
    began = time.monotonic()
    t.join(60)
    assert not t.is_alive()
    assert result.get("result") == 5, result  # its outcome, from the new owner
    took = time.monotonic() - began
    assert took < 10 * LEASE + 10, took
    entries = c.ok("invoke", agent='Journal("j")', method="all")["result"]
    assert entries == ["first", "k1", "k2", "k3", "awaited"]  # each once, in order; first ran again
    assert c.meta('Journal("j")')["node"] in ("n1", "n2")
    # the dead node comes back: a new epoch, and it serves as a node again
    cluster.nodes[0].start()
    back = cluster.conn(0)
    assert back.ok("invoke", agent='Journal("j")', method="all")["result"] == entries
    back.close()
    c.close()
    waiter.close()


def test_a_node_paused_past_its_lease_cannot_write_again(cluster: Cluster) -> None:
    a, b = cluster.conn(0), cluster.conn(1)
    a.ok("invoke", agent='Journal("p")', method="append", args=["before"], idempotency_key="before")
    assert a.meta('Journal("p")')["node"] == "n0"
    # a call runs on n0 when it is paused; its worker finishes during the pause
    a.ok("invoke", agent='Journal("p")', method="slow_append", args=["during", 1.0], mode="trigger",
         idempotency_key="during")
    wait_for(lambda: a.meta('Journal("p")').get("current_invocation"), what="during to start")
    cluster.pause(0)
    try:
        # n1 waits out n0's lease, declares it dead and takes the agent over
        r = b.call("invoke", agent='Journal("p")', method="append", args=["after"], idempotency_key="after")
        assert r.get("result") == 3, r
        assert b.meta('Journal("p")')["node"] in ("n1", "n2")
    finally:
        cluster.resume(0)
    # n0 wakes, finds it was declared dead, and drops the agent; its late reply wrote nothing
    wait_for(lambda: "declared this one dead" in cluster.nodes[0].log(), 20, what="n0 to notice")
    entries = b.ok("invoke", agent='Journal("p")', method="all")["result"]
    assert entries == ["before", "during", "after"], entries
    a2 = cluster.conn(0)
    assert a2.ok("invoke", agent='Journal("p")', method="all")["result"] == entries  # forwarded now
    assert a2.meta('Journal("p")')["node"] != "n0"
    a2.close()
    b.close()


def test_postgresql_restarting_under_idle_nodes(cluster: Cluster, pg) -> None:
    c = cluster.conn(1)
    assert c.ok("invoke", agent='CounterAgent("r")', method="increment")["result"] == 1
    c.close()
    pg.restart()
    restarted = time.monotonic()

    def renewed_since(i: int) -> bool:
        conn = cluster.conn(i)
        try:
            r = conn.call("status")
            return "cluster" in r and r["cluster"]["since_renewal"] < time.monotonic() - restarted
        finally:
            conn.close()

    # the nodes' renewals reconnect; none loses its agents or its place
    wait_for(lambda: all(renewed_since(i) for i in range(3)), 20, what="every node to renew after the restart")
    for i in range(3):
        conn = cluster.conn(i)
        assert conn.ok("invoke", agent='CounterAgent("r")', method="increment")["result"] == i + 2
        conn.close()
    assert all(d.proc is not None and d.proc.poll() is None for d in cluster.nodes), cluster.logs()
    assert "dropping" not in cluster.nodes[1].log()


def test_the_dashboard_api_of_any_node_acts_on_the_owner(pg) -> None:
    from tests.cluster.conftest import Cluster as Nodes
    from tests.http_helpers import login

    c = Nodes(pg, 2, extra=("--http", "127.0.0.1:0")).start()
    try:
        a = c.conn(0)
        a.ok("invoke", agent=S, method="work", args=[30, "busy"], mode="trigger", idempotency_key="busy")
        wait_for(lambda: a.meta(S).get("current_invocation"), what="busy to start")
        a.ok("invoke", agent=S, method="work", args=[0.1, "q"], mode="trigger", idempotency_key="q")
        web = login(c.nodes[1])  # the dashboard of the node that does not own it
        assert web.op("get", agent=S)["agent"]["node"] == "n0"
        assert [i["idempotency_key"] for i in web.op("invocations", agent=S)["invocations"]] == ["busy", "q"]
        assert web.op("cancel", agent=S, idempotency_key="q")["canceled"] is True
        assert a.meta(S)["pending_invocation_count"] == 0
        assert [x["agent_id"] for x in web.op("list")["agents"]] == [S]  # gathered from every node
        a.ok("interrupt", agent=S)
        a.close()
    finally:
        c.close(passed=True)
