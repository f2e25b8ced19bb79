"""What survives a restart of the daemon: graceful (SIGTERM) and kill -9."""

from __future__ import annotations

import signal

from tests.helpers import DaemonProc, wait_for


def _restart(d: DaemonProc, hard: bool) -> DaemonProc:
    if hard:
        d.kill9()
    else:
        assert d.stop(signal.SIGTERM) == 0
    d.assert_no_strays()
    return d.start()


def test_state_and_stored_outcomes_survive_kill_9(daemon: DaemonProc):
    c = daemon.conn()
    a = 'CounterAgent("dur")'
    for i in range(5):
        c.ok("invoke", agent=a, method="increment", idempotency_key=f"k{i}")
    c.close()
    _restart(daemon, hard=True)
    c = daemon.conn()
    meta = c.ok("get", agent=a)["agent"]
    assert meta["status"] == "Suspended" and meta["completed_count"] == 5 and meta["pid"] is None
    # A repeated key is answered from the store, not run again.
    assert c.ok("invoke", agent=a, method="increment", idempotency_key="k2")["result"] == 3
    assert c.ok("invoke", agent=a, method="increment")["result"] == 6
    kinds = [e["kind"] for e in c.ok("oplog", agent=a)["entries"]]
    assert "resumed_from_snapshot" in kinds
    c.close()


def test_kill_9_before_the_agent_row_is_written_again_and_again(daemon: DaemonProc):
    """A completion's commit leaves the agent's row to be written a second
    later (golemd.storage.rollforward): killed at once, and killed again
    right after the restart, the agent still reads every call, failed ones
    apart, and its newest state."""
    c = daemon.conn()
    a = 'CounterAgent("stale")'
    c.ok("invoke", agent=a, method="add", args=[10])
    c.err("invoke", agent=a, method="fail_after_add", args=[5])
    for _ in range(3):
        c.ok("invoke", agent=a, method="increment")
    c.close()
    for _ in range(2):
        _restart(daemon, hard=True)
        c = daemon.conn()
        meta = c.ok("get", agent=a)["agent"]
        assert (meta["completed_count"], meta["failed_count"]) == (4, 1)
        assert meta["last_error"].startswith("INVOCATION_FAILED")
        c.close()
    c = daemon.conn()
    assert c.ok("invoke", agent=a, method="get")["result"] == 13
    c.close()
    assert daemon.stop(signal.SIGTERM) == 0
    daemon.start()
    c = daemon.conn()
    assert c.ok("get", agent=a)["agent"]["completed_count"] == 5
    assert c.ok("invoke", agent=a, method="increment")["result"] == 14
    c.close()


def test_pending_queue_survives_and_runs_in_order(daemon: DaemonProc):
    c = daemon.conn()
    a = 'Journal("q")'
    c.ok("invoke", agent=a, method="slow_append", args=["first", 30.0], mode="trigger", idempotency_key="first")
    wait_for(lambda: c.meta(a).get("status") == "Running")
    for i in range(10):
        c.ok("invoke", agent=a, method="append", args=[f"e{i}"], mode="trigger", idempotency_key=f"e{i}")
    c.close()
    _restart(daemon, hard=True)
    c = daemon.conn()
    # The invocation that was running is run again first, then the queue in order.
    wait_for(lambda: c.meta(a).get("status") == "Running")
    assert c.ok("get", agent=a)["agent"]["pending_invocation_count"] == 10
    keys = [i["idempotency_key"] for i in c.ok("invocations", agent=a)["invocations"]]
    assert keys == ["first"] + [f"e{i}" for i in range(10)]
    c.close()


def test_running_invocation_is_retried_after_kill_9(daemon: DaemonProc):
    c = daemon.conn()
    a = 'Journal("r")'
    c.ok("invoke", agent=a, method="append", args=["before"])
    c.ok("invoke", agent=a, method="slow_append", args=["slow", 3.0], mode="trigger", idempotency_key="slow")
    wait_for(lambda: c.meta(a).get("status") == "Running")
    c.close()
    _restart(daemon, hard=True)
    c = daemon.conn()
    # It was cut off mid-run: the restarted daemon runs it again.
    assert [i["idempotency_key"] for i in c.ok("invocations", agent=a)["invocations"]] == ["slow"]
    # Awaiting the same key attaches to the re-run, which starts from the last snapshot.
    assert c.ok("invoke", agent=a, method="slow_append", args=["slow", 3.0], idempotency_key="slow")["result"] == 2
    assert c.ok("invoke", agent=a, method="all")["result"] == ["before", "slow"]
    c.close()


def test_graceful_stop_keeps_pending_and_answers_waiters(daemon: DaemonProc):
    c = daemon.conn()
    a = 'SlowAgent("g")'
    running = c.send(op="invoke", agent=a, method="work", args=[0.5, "run"], idempotency_key="run")
    wait_for(lambda: c.meta(a).get("status") == "Running")
    waiting = c.send(op="invoke", agent=a, method="work", args=[0.1, "wait"], idempotency_key="wait")
    wait_for(lambda: c.meta(a).get("pending_invocation_count") == 1)
    daemon.proc.send_signal(signal.SIGTERM)
    # The running invocation finishes within the drain; the pending one is told we stop.
    assert c.reply(running)["result"] == "run"
    assert c.reply(waiting)["error"]["code"] == "SHUTTING_DOWN"
    assert daemon.proc.wait(30) == 0
    daemon.assert_no_strays()
    daemon.start()
    c = daemon.conn()
    assert c.ok("invoke", agent=a, method="work", args=[0.1, "wait"], idempotency_key="wait")["result"] == "wait"
    assert c.ok("invoke", agent=a, method="history")["result"] == ["run", "wait"]
    c.close()


def test_interrupted_agent_stays_interrupted(daemon: DaemonProc):
    c = daemon.conn()
    a = 'CounterAgent("int")'
    c.ok("invoke", agent=a, method="increment")
    c.ok("interrupt", agent=a)
    c.ok("invoke", agent=a, method="increment", mode="trigger", idempotency_key="held")
    c.close()
    _restart(daemon, hard=False)
    c = daemon.conn()
    meta = c.ok("get", agent=a)["agent"]
    assert meta["status"] == "Interrupted" and meta["pending_invocation_count"] == 1
    c.ok("resume", agent=a)
    assert c.ok("invoke", agent=a, method="increment", idempotency_key="held")["result"] == 2
    c.close()


def test_second_daemon_on_same_state_dir_is_refused(daemon: DaemonProc):
    import subprocess
    import sys

    other = subprocess.run(
        [sys.executable, "-m", "golemd.cli", "--socket", daemon.socket + "2", "--state-dir", daemon.state_dir],
        capture_output=True, text=True, timeout=30)
    assert other.returncode != 0
    assert f"pid {daemon.proc.pid}" in other.stderr
    c = daemon.conn()
    c.ok("status")
    c.close()


def test_failed_agent_stays_failed_after_restart(daemon: DaemonProc):
    c = daemon.conn()
    a = 'BadInit("x")'
    assert c.err("invoke", agent=a, method="hello") == "AGENT_FAILED"
    c.close()
    _restart(daemon, hard=True)
    c = daemon.conn()
    meta = c.ok("get", agent=a)["agent"]
    assert meta["status"] == "Failed" and "cannot start: x" in meta["last_error"]
    assert c.err("invoke", agent=a, method="hello") == "AGENT_FAILED"
    c.ok("delete", agent=a)  # delete clears it
    assert c.err("get", agent=a) == "AGENT_NOT_FOUND"
    c.close()
