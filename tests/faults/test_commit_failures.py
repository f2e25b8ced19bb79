"""Commits that fail (GOLEMD_FAIL_COMMIT: exactly the commit a test means, as a
full disk would fail it), where calls start before their commits: an awaited
call to an idle warm agent runs while its enqueue commits, and a queued call
goes to the worker before the previous outcome commits."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from tests.helpers import DaemonProc, RawConn, running, wait_for


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[tuple[DaemonProc, Path]]:
    flag = tmp_path / "fail-next-commit"
    with running(env={"GOLEMD_FAIL_COMMIT": str(flag)}) as d:
        yield d, flag


def test_a_warm_calls_failed_commit_refuses_it_without_a_trace(failing):
    d, flag = failing
    c = d.conn()
    a = 'Journal("early")'
    assert c.ok("invoke", agent=a, method="append", args=["first"])["result"] == 1
    worker = c.meta(a)["pid"]
    flag.touch()
    assert c.err("invoke", agent=a, method="append", args=["refused"], idempotency_key="r") == "STORAGE_FULL"
    assert not flag.exists()  # that commit was the one that failed
    assert c.err("cancel", agent=a, idempotency_key="r") == "NOT_FOUND"
    assert c.ok("invoke", agent=a, method="all")["result"] == ["first"]
    assert c.meta(a)["pid"] != worker  # the worker that ran it was stopped
    assert c.ok("invoke", agent=a, method="append", args=["r"], idempotency_key="r")["result"] == 2


def test_a_trigger_on_an_early_calls_key_is_answered_after_its_commit(failing):
    """A trigger that names the key of a call still being journaled must not
    be told "running" before that commit: here the commit fails, and both
    hear STORAGE_FULL."""
    d, flag = failing
    c = d.conn()
    a = 'Journal("samekey")'
    c.ok("invoke", agent=a, method="append", args=["first"])
    flag.touch()
    first = {"v": 1, "id": 101, "op": "invoke", "agent": a, "method": "append", "args": ["x"],
             "idempotency_key": "k"}
    second = {**first, "id": 102, "mode": "trigger"}
    c.send_raw(msgpack.packb(first) + msgpack.packb(second))  # one write: one read
    assert c.reply(101)["error"]["code"] == "STORAGE_FULL"
    assert c.reply(102)["error"]["code"] == "STORAGE_FULL"
    assert c.ok("invoke", agent=a, method="all")["result"] == ["first"]


def test_a_failed_outcome_drops_the_unsaved_state_and_reruns_the_next_call(failing):
    """A's outcome does not commit. B, sent to the worker before that commit,
    ran on top of A's unsaved state: it runs again from the last saved one.
    A stays journaled (it would run again after a restart) until canceled."""
    d, flag = failing
    c = d.conn()
    a = 'Journal("unsaved")'
    c.ok("invoke", agent=a, method="append", args=["first"])
    ca = RawConn(d.socket)
    ra = ca.send(op="invoke", agent=a, method="slow_append", args=["A", 1.5], idempotency_key="kA")
    wait_for(lambda: (c.meta(a).get("current_invocation") or {}).get("idempotency_key") == "kA",
             what="A running")
    # A trigger's ack comes after its commit: B is journaled before the flag exists.
    assert c.ok("invoke", agent=a, method="append", args=["B"], mode="trigger",
                idempotency_key="kB")["status"] == "pending"
    flag.touch()
    assert ca.reply(ra)["error"]["code"] == "STORAGE_FULL"
    assert c.ok("invoke", agent=a, method="append", args=["B"], idempotency_key="kB")["result"] == 2
    assert c.ok("invoke", agent=a, method="all")["result"] == ["first", "B"]
    log = [(e["kind"], e.get("idempotency_key")) for e in c.ok("oplog", agent=a)["entries"]]
    assert ("process_died", "kB") in log
    # A ran, but nothing of it was saved: its key says so, and a cancel makes it final.
    r = c.call("invoke", agent=a, method="slow_append", args=["A", 1.5], idempotency_key="kA")
    assert r["error"]["code"] == "STORAGE_FULL" and "runs again after a restart" in r["error"]["message"]
    assert c.ok("cancel", agent=a, idempotency_key="kA")["canceled"] is True
    c.close()
    ca.close()
    assert d.stop(signal.SIGTERM) == 0
    d.start()
    c = d.conn()
    assert c.ok("invoke", agent=a, method="all")["result"] == ["first", "B"]
    c.close()


def test_without_a_cancel_the_journaled_call_runs_after_a_restart(failing):
    d, flag = failing
    c = d.conn()
    a = 'Journal("rerun")'
    c.ok("invoke", agent=a, method="append", args=["first"])
    # A runs long enough for the flag to be made while it runs, on a slow machine too.
    rid = c.send(op="invoke", agent=a, method="slow_append", args=["A", 1.0], idempotency_key="kA")
    wait_for(lambda: (c.meta(a).get("current_invocation") or {}).get("idempotency_key") == "kA",
             what="A running")
    flag.touch()
    assert c.reply(rid)["error"]["code"] == "STORAGE_FULL"
    assert c.ok("invoke", agent=a, method="all")["result"] == ["first"]
    c.close()
    assert d.stop(signal.SIGTERM) == 0
    d.start()
    c = d.conn()
    assert c.ok("invoke", agent=a, method="slow_append", args=["A", 1.0], idempotency_key="kA")["result"] == 2
    assert c.ok("invoke", agent=a, method="all")["result"] == ["first", "A"]
    c.close()
