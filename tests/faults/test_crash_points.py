"""Deterministic crash points between the journal steps (GOLEMD_CRASH_AT)."""

from __future__ import annotations

import pytest

from tests.helpers import DaemonProc

pytestmark = pytest.mark.slow
A = 'Journal("cp")'


def _after_crash(d: DaemonProc) -> DaemonProc:
    d.proc.wait(20)
    d.assert_no_strays()
    d.extra_env = {}
    return d.start()


@pytest.mark.parametrize("label,outcome", [
    ("enqueued", "lost"),      # journal written but never committed, never acked
    ("acked", "runs"),         # committed, the ack never sent: it runs after restart
    ("result", "runs"),        # the agent answered, nothing journaled: it runs again
    ("finished", "done"),      # outcome committed, the caller never told: stored
])
def test_crash_point(label: str, outcome: str):
    d = DaemonProc(env={"GOLEMD_CRASH_AT": label}).start()
    try:
        c = d.conn()
        with pytest.raises(ConnectionError):
            c.call("invoke", agent=A, method="append", args=["x"], idempotency_key="x",
                   mode="trigger" if label in ("enqueued", "acked") else "await")
        c.close()
        _after_crash(d)
        c = d.conn()
        if outcome == "lost":
            assert c.err("get", agent=A) == "AGENT_NOT_FOUND"
        else:
            r = c.ok("invoke", agent=A, method="append", args=["x"], idempotency_key="x")
            assert r["result"] == 1
            assert c.ok("invoke", agent=A, method="all")["result"] == ["x"]
            kinds = [e["kind"] for e in c.ok("oplog", agent=A)["entries"]]
            assert kinds.count("completed") == 2  # "x", then "all"
        c.close()
    finally:
        if d.proc.poll() is None:
            d.stop()
        d.assert_no_strays()


def test_crash_points_give_the_same_outcome_every_run():
    for _ in range(2):
        test_crash_point("result", "runs")
