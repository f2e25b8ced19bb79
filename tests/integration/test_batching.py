"""Batched calls (batch_calls): queued calls go to the worker behind the one it
runs, and each stays cancelable until it starts, exactly (docs/semantics.md)."""

from __future__ import annotations

import random

import pytest

from tests.helpers import RawConn, running, wait_for


def _idle(conn: RawConn, agent: str) -> bool:
    meta = conn.meta(agent)
    return meta.get("pending_invocation_count") == 0 and meta.get("current_invocation") is None


def _entries(conn: RawConn, agent: str) -> list[str]:
    return list(conn.ok("invoke", agent=agent, method="all")["result"])


def test_a_call_sent_ahead_is_canceled_and_the_rest_run_in_order(conn: RawConn):
    a = 'Journal("ahead")'
    conn.ok("invoke", agent=a, method="slow_append", args=["slow", 1.0], mode="trigger", idempotency_key="slow")
    wait_for(lambda: (conn.meta(a).get("current_invocation") or {}).get("idempotency_key") == "slow")
    for key in ("a", "b", "c", "d"):
        conn.ok("invoke", agent=a, method="append", args=[key], mode="trigger", idempotency_key=key)
    assert conn.meta(a)["pending_invocation_count"] == 4
    listed = [i["idempotency_key"] for i in conn.ok("invocations", agent=a)["invocations"]]
    assert listed == ["slow", "a", "b", "c", "d"]
    conn.ok("cancel", agent=a, idempotency_key="b")
    assert conn.meta(a)["pending_invocation_count"] == 3
    wait_for(lambda: _idle(conn, a), timeout=15, what="the queue to run")
    assert _entries(conn, a) == ["slow", "a", "c", "d"]
    assert conn.err("invoke", agent=a, method="append", args=["b"], idempotency_key="b") == "CANCELED"


@pytest.mark.parametrize("batch", [16, 0])
def test_cancel_is_exact_while_calls_stream_through(batch: int):
    """Cancels race calls that run in microseconds: every cancel that answers
    success leaves its call unrun, every TOO_LATE one ran once, and what ran
    ran in order. With batch_calls 0 the same holds one call at a time."""
    rng = random.Random(4)
    with running({"batch_calls": batch}) as d:
        conn = d.conn()
        a = 'Journal("race")'
        sent: list[str] = []
        canceled: set[str] = set()
        too_late: set[str] = set()
        for round_ in range(25):
            keys = [f"r{round_}-{i}" for i in range(20)]
            ids = [conn.send(op="invoke", agent=a, method="append", args=[k], mode="trigger",
                             idempotency_key=k) for k in keys]
            sent += keys
            victims = rng.sample(keys, 4)
            cancels = {k: conn.send(op="cancel", agent=a, idempotency_key=k) for k in victims}
            for rid in ids:
                assert "error" not in conn.reply(rid)
            for key, rid in cancels.items():
                r = conn.reply(rid)
                if "error" in r:
                    assert r["error"]["code"] == "TOO_LATE", r
                    too_late.add(key)
                else:
                    canceled.add(key)
        wait_for(lambda: _idle(conn, a), timeout=30, what="the queue to run")
        entries = _entries(conn, a)
        assert len(entries) == len(set(entries)), "a call ran twice"
        assert not canceled & set(entries), "a call canceled with success ran"
        assert too_late <= set(entries), "a call answered TOO_LATE did not run"
        assert entries == [k for k in sent if k not in canceled], "lost or reordered"
        assert canceled, "no cancel won the race: the test did not test it"
        conn.close()


def test_reload_takes_back_what_was_sent_ahead(daemon, conn: RawConn):
    """Calls queued behind a running one run on the code loaded after them."""
    a = 'Journal("reload")'
    conn.ok("invoke", agent=a, method="slow_append", args=["slow", 1.0], mode="trigger", idempotency_key="slow")
    wait_for(lambda: (conn.meta(a).get("current_invocation") or {}).get("idempotency_key") == "slow")
    old_pid = conn.worker_pid(a)
    conn.ok("invoke", agent=a, method="append", args=["after"], mode="trigger", idempotency_key="after")
    conn.ok("reload")
    wait_for(lambda: _idle(conn, a), timeout=15, what="the queue to run")
    assert _entries(conn, a) == ["slow", "after"]
    assert conn.meta(a)["pid"] != old_pid  # "after" ran on a worker of the new code
