"""Durable execution across nodes: an agent calls an agent another node
owns; a promise made on one node is completed through another node's
socket, and by an agent on a third node (PostgreSQL's NOTIFY wakes the
waiter where it waits)."""

from __future__ import annotations

import threading

import pytest

from tests.cluster.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def test_a_call_between_agents_on_two_nodes(cluster: Cluster, tmp_path) -> None:
    n0, n1, n2 = (cluster.conn(i) for i in range(3))
    n0.ok("invoke", agent='Inventory("i")', method="add", args=["apple", 2])
    n1.ok("invoke", agent='Shop("s")', method="orders_made")
    assert n2.meta('Inventory("i")')["node"] == "n0" and n2.meta('Shop("s")')["node"] == "n1"
    # through n2, to Shop on n1, which calls Inventory on n0
    assert n2.ok("invoke", agent='Shop("s")', method="call", args=['Inventory("i")', "reserve", ["apple"]],
                 idempotency_key="r1")["result"] == 1
    assert n0.ok("invoke", agent='Inventory("i")', method="count", args=["apple"])["result"] == 1
    # the same key again: the stored outcome, the call not made twice
    assert n0.ok("invoke", agent='Shop("s")', method="call", args=['Inventory("i")', "reserve", ["apple"]],
                 idempotency_key="r1")["result"] == 1
    assert n1.ok("invoke", agent='Inventory("i")', method="count", args=["apple"])["result"] == 1
    for c in (n0, n1, n2):
        c.close()


def promise_of(c, agent: str) -> str:
    promises = c.ok("promise_list", agent=agent)["promises"]
    assert len(promises) == 1, promises
    return str(promises[0]["promise_id"])


def test_promises_completed_from_other_nodes(cluster: Cluster, tmp_path) -> None:
    n0, n1, n2 = (cluster.conn(i) for i in range(3))
    ledger = str(tmp_path / "ledger")
    n1.ok("invoke", agent='Shop("a")', method="orders_made")  # placed on n1
    answers: dict[str, dict] = {}
    waiter = cluster.conn(0)

    def wait(key: str) -> None:
        answers[key] = waiter.call("invoke", agent='Shop("a")', method="approval", args=[ledger],
                                   idempotency_key=key)

    t = threading.Thread(target=wait, args=("first",))
    t.start()
    wait_for(lambda: n2.ok("promise_list", agent='Shop("a")')["promises"], what="the promise")
    pid = promise_of(n2, 'Shop("a")')
    # through n2's socket: the op goes to the promise's agent's owner, n1
    n2.ok("promise_complete", promise_id=pid, value="yes")
    t.join(30)
    assert answers["first"]["result"] == {"value": "yes", "id": pid}, answers
    # completed by an agent on another node (Shop("b") on n2): n1 hears of it through NOTIFY
    n2.ok("invoke", agent='Shop("b")', method="orders_made")
    assert n0.meta('Shop("b")')["node"] == "n2"
    t = threading.Thread(target=wait, args=("second",))
    t.start()
    wait_for(lambda: len(n0.ok("promise_list", agent='Shop("a")')["promises"]) == 1, what="the second promise")
    pid2 = promise_of(n0, 'Shop("a")')
    assert pid2 != pid
    assert n0.ok("invoke", agent='Shop("b")', method="complete", args=[pid2, 42])["result"] == "ok"
    t.join(30)
    assert answers["second"]["result"] == {"value": 42, "id": pid2}, answers
    for c in (n0, n1, n2, waiter):
        c.close()
