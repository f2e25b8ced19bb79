"""Stored outcomes are kept per agent (retention_count newest, retention_seconds at least) and pruned every 1,000 completions."""

from __future__ import annotations

import msgpack

from tests.helpers import running


def _invoke_many(c, agent: str, n: int) -> None:
    """n awaited increments with keys k0..k(n-1), pipelined in one write."""
    ids = list(range(10_000, 10_000 + n))
    c.send_raw(b"".join(msgpack.packb({"v": 1, "id": rid, "op": "invoke", "agent": agent, "method": "increment",
                                       "idempotency_key": f"k{i}"}) for i, rid in enumerate(ids)))
    assert [c.reply(rid)["result"] for rid in ids] == list(range(1, n + 1))


def test_outcomes_beyond_retention_are_pruned():
    with running({"retention_count": 5, "retention_seconds": 0.0}) as d:
        c = d.conn()
        a = 'CounterAgent("pruned")'
        _invoke_many(c, a, 1000)
        # The 1,000th completion pruned all but the newest 5: an old key is new again.
        assert c.ok("invoke", agent=a, method="increment", idempotency_key="k999")["result"] == 1000
        assert c.ok("invoke", agent=a, method="increment", idempotency_key="k0")["result"] == 1001
        c.close()


def test_outcomes_within_retention_are_kept():
    with running() as d:  # newest 10,000 and a day: nothing of 1,000 goes
        c = d.conn()
        a = 'CounterAgent("kept")'
        _invoke_many(c, a, 1000)
        assert c.ok("invoke", agent=a, method="increment", idempotency_key="k0")["result"] == 1
        c.close()
