"""Idempotency keys, cancel, interrupt, resume, simulate-crash, delete, retries."""

from __future__ import annotations

import os
import threading

from tests.helpers import RawConn, wait_for

S = 'SlowAgent("s1")'


def busy(conn: RawConn, agent: str = S, seconds: float = 30.0, key: str = "busy") -> None:
    """Start a long invocation and wait until it runs."""
    conn.ok("invoke", agent=agent, method="work", args=[seconds, key], mode="trigger", idempotency_key=key)
    wait_for(lambda: (conn.ok("get", agent=agent)["agent"]["current_invocation"] or {}).get("idempotency_key") == key,
             what="the busy invocation to start")


def test_seed_typical_workflow(conn: RawConn):
    busy(conn)
    r = conn.ok("invoke", agent=S, method="work", args=[0.1, "batch"], mode="trigger",
                idempotency_key="my-batch-job")
    assert r["idempotency_key"] == "my-batch-job" and r["status"] == "pending"
    meta = conn.ok("get", agent=S)["agent"]
    assert meta["pending_invocation_count"] == 1 and meta["status"] == "Running"
    assert meta["current_invocation"] == {"idempotency_key": "busy", "method": "work"}
    r = conn.ok("cancel", agent=S, idempotency_key="my-batch-job")
    assert r["idempotency_key"] == "my-batch-job" and r["canceled"] is True
    assert conn.ok("get", agent=S)["agent"]["pending_invocation_count"] == 0


def test_cancel_outcomes(conn: RawConn):
    busy(conn)
    conn.ok("invoke", agent=S, method="work", args=[0.1, "p"], mode="trigger", idempotency_key="p")
    assert conn.err("cancel", agent=S, idempotency_key="busy") == "TOO_LATE"
    r = conn.call("cancel", agent=S, idempotency_key="busy")
    assert "already started" in r["error"]["message"]
    conn.ok("cancel", agent=S, idempotency_key="p")
    conn.ok("cancel", agent=S, idempotency_key="p")  # twice: still a success
    assert conn.err("cancel", agent=S, idempotency_key="never") == "NOT_FOUND"
    assert conn.err("cancel", agent='SlowAgent("nobody")', idempotency_key="p") == "AGENT_NOT_FOUND"
    conn.ok("invoke", agent='CounterAgent("done")', method="increment", idempotency_key="d")
    r = conn.call("cancel", agent='CounterAgent("done")', idempotency_key="d")
    assert r["error"]["code"] == "TOO_LATE" and "already completed" in r["error"]["message"]
    # A canceled key answers CANCELED when used again, and never runs.
    assert conn.err("invoke", agent=S, method="work", args=[0.1, "p"], idempotency_key="p") == "CANCELED"


def test_awaiting_caller_of_canceled_invocation_gets_canceled(daemon, conn: RawConn):
    busy(conn)
    other = daemon.conn()
    rid = other.send(op="invoke", agent=S, method="work", args=[0.1, "w"], idempotency_key="w")
    wait_for(lambda: conn.meta(S).get("pending_invocation_count") == 1)
    conn.ok("cancel", agent=S, idempotency_key="w")
    assert other.reply(rid)["error"]["code"] == "CANCELED"
    other.close()


def test_idempotency_stored_outcome_and_conflict(conn: RawConn):
    a = 'CounterAgent("idem")'
    r1 = conn.ok("invoke", agent=a, method="increment", idempotency_key="k1")
    r2 = conn.ok("invoke", agent=a, method="increment", idempotency_key="k1")
    assert r1["result"] == r2["result"] == 1
    assert conn.ok("invoke", agent=a, method="get")["result"] == 1  # ran once
    r = conn.ok("invoke", agent=a, method="increment", idempotency_key="k1", mode="trigger")
    assert r["status"] == "completed" and r["result"] == 1
    assert conn.err("invoke", agent=a, method="add", args=[1], idempotency_key="k1") == "IDEMPOTENCY_CONFLICT"
    conn.ok("invoke", agent=a, method="add", args=[1], idempotency_key="k2")
    assert conn.err("invoke", agent=a, method="add", args=[2], idempotency_key="k2") == "IDEMPOTENCY_CONFLICT"
    assert conn.ok("invoke", agent=a, method="get")["result"] == 2
    # Keys are scoped to one agent.
    assert conn.ok("invoke", agent='CounterAgent("other")', method="add", args=[2], idempotency_key="k2")["result"] == 2
    # A stored failure is answered again, not re-run.
    e1 = conn.call("invoke", agent=a, method="fail_after_add", args=[1], idempotency_key="f")["error"]
    e2 = conn.call("invoke", agent=a, method="fail_after_add", args=[1], idempotency_key="f")["error"]
    assert e1 == e2 and e1["code"] == "INVOCATION_FAILED"
    assert conn.ok("get", agent=a)["agent"]["failed_count"] == 1


def test_concurrent_callers_on_one_key_share_one_run(daemon, conn: RawConn):
    agent = 'Journal("shared")'
    results = []

    def call() -> None:
        c = daemon.conn()
        results.append(c.ok("invoke", agent=agent, method="slow_append", args=["x", 0.5],
                            idempotency_key="same")["result"])
        c.close()

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [1] * 5
    assert conn.ok("invoke", agent=agent, method="all")["result"] == ["x"]


def test_interrupt_and_resume(daemon, conn: RawConn):
    other = daemon.conn()
    rid = other.send(op="invoke", agent=S, method="work", args=[30, "long"], idempotency_key="long")
    wait_for(lambda: conn.meta(S).get("status") == "Running")
    conn.ok("invoke", agent=S, method="work", args=[0.01, "next"], mode="trigger", idempotency_key="next")
    assert conn.ok("interrupt", agent=S)["agent"]["status"] == "Interrupted"
    assert other.reply(rid)["error"]["code"] == "INTERRUPTED"
    meta = conn.ok("get", agent=S)["agent"]
    assert meta["status"] == "Interrupted" and meta["pending_invocation_count"] == 2
    keys = [i["idempotency_key"] for i in conn.ok("invocations", agent=S)["invocations"]]
    assert keys == ["long", "next"]  # the interrupted one went back to the head
    # Held: nothing runs while interrupted; a cancel of the held head works.
    conn.ok("cancel", agent=S, idempotency_key="long")
    conn.ok("resume", agent=S)
    wait_for(lambda: conn.ok("get", agent=S)["agent"]["completed_count"] == 1)
    assert conn.ok("invoke", agent=S, method="history")["result"] == ["next"]
    other.close()


def test_interrupt_idle_agent_holds_queue(conn: RawConn):
    a = 'CounterAgent("held")'
    conn.ok("invoke", agent=a, method="increment")
    conn.ok("interrupt", agent=a)
    conn.ok("invoke", agent=a, method="increment", mode="trigger", idempotency_key="q")
    meta = conn.ok("get", agent=a)["agent"]
    assert meta["status"] == "Interrupted" and meta["pending_invocation_count"] == 1
    conn.ok("resume", agent=a)
    assert conn.ok("invoke", agent=a, method="get")["result"] == 2


def test_interrupt_recover_retries_and_caller_gets_result(daemon, conn: RawConn):
    a = 'Journal("rec")'
    other = daemon.conn()
    rid = other.send(op="invoke", agent=a, method="slow_append", args=["x", 1.0], idempotency_key="r")
    wait_for(lambda: conn.meta(a).get("status") == "Running")
    pid = conn.worker_pid(a)
    conn.ok("interrupt", agent=a, recover=True)
    assert other.reply(rid)["result"] == 1
    meta = conn.ok("get", agent=a)["agent"]
    assert meta["pid"] != pid and meta["status"] == "Idle"
    assert conn.ok("invoke", agent=a, method="all")["result"] == ["x"]
    other.close()


def test_worker_death_is_retried_from_last_state(conn: RawConn, tmp_path):
    a = 'Crashy("c")'
    marker = str(tmp_path / "m")
    open(marker + ".die", "w").write("2")  # die on the first two attempts
    conn.ok("invoke", agent=a, method="add_then_die", args=[1, str(tmp_path / "warm")])
    r = conn.ok("invoke", agent=a, method="add_then_die", args=[10, marker])
    assert r["result"] == 11  # the dead attempts' +10 were not kept
    meta = conn.ok("get", agent=a)["agent"]
    assert meta["retry_count"] == 2 and meta["completed_count"] == 2
    kinds = [e["kind"] for e in conn.ok("oplog", agent=a)["entries"]]
    assert kinds.count("process_died") == 2 and "retried" in kinds


def test_worker_death_exhausts_retries(conn: RawConn):
    a = 'Crashy("d")'
    r = conn.call("invoke", agent=a, method="always_die")
    assert r["error"]["code"] == "AGENT_DIED" and "3 attempts" in r["error"]["message"]
    assert "status 3" in r["error"]["message"]
    # The agent goes on with its queue.
    assert conn.ok("invoke", agent=a, method="value_now")["result"] == 0


def test_kill_9_of_a_worker_mid_call(conn: RawConn):
    a = 'Crashy("k")'
    pid = conn.ok("invoke", agent=a, method="pid")["result"]
    rid = conn.send(op="invoke", agent=a, method="sleep", args=[1.0])
    wait_for(lambda: conn.meta(a).get("status") == "Running")
    os.kill(pid, 9)
    assert conn.reply(rid)["result"] == "slept"
    assert conn.ok("get", agent=a)["agent"]["retry_count"] == 1


def test_delete_answers_everyone_and_recreates_fresh(daemon, conn: RawConn):
    other = daemon.conn()
    running = other.send(op="invoke", agent=S, method="work", args=[30, "r"], idempotency_key="r")
    wait_for(lambda: conn.meta(S).get("status") == "Running")
    pending = other.send(op="invoke", agent=S, method="work", args=[1, "p"], idempotency_key="p")
    wait_for(lambda: conn.meta(S).get("pending_invocation_count") == 1)
    pid = conn.worker_pid(S)
    last = conn.ok("delete", agent=S)["agent"]
    assert last["agent_id"] == S
    codes = {other.reply(running)["error"]["code"], other.reply(pending)["error"]["code"]}
    assert codes == {"INTERRUPTED", "CANCELED"}
    assert conn.err("get", agent=S) == "AGENT_NOT_FOUND"
    assert conn.err("delete", agent=S) == "AGENT_NOT_FOUND"
    wait_for(lambda: not _alive(pid), what="the deleted agent's process to exit")
    # Recreated afresh: no history, the old key is unknown.
    assert conn.ok("invoke", agent=S, method="history")["result"] == []
    assert conn.ok("get", agent=S)["agent"]["completed_count"] == 1
    other.close()


def test_list_filters(conn: RawConn):
    conn.ok("invoke", agent='CounterAgent("l1")', method="increment")
    conn.ok("invoke", agent='dev/CounterAgent("l2")', method="increment")
    conn.ok("invoke", agent="EchoAgent()", method="echo")
    conn.ok("interrupt", agent="EchoAgent()")
    ids = lambda **f: [a["agent_id"] for a in conn.ok("list", **f)["agents"]]  # noqa: E731
    assert ids() == sorted(['CounterAgent("l1")', 'dev/CounterAgent("l2")', "EchoAgent()"])
    assert ids(type="CounterAgent") == ['CounterAgent("l1")', 'dev/CounterAgent("l2")']
    assert ids(env="default") == ['CounterAgent("l1")', "EchoAgent()"]
    assert ids(status="Interrupted") == ["EchoAgent()"]
    assert ids(env="nope") == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_streaming_caller_sees_its_queue_position_until_it_starts(conn: RawConn):
    a = 'SlowAgent("pos")'
    conn.ok("invoke", agent=a, method="work", args=[0.6, "one"], mode="trigger", idempotency_key="one")
    conn.ok("invoke", agent=a, method="work", args=[0.2, "two"], mode="trigger", idempotency_key="two")
    events: list[dict] = []
    r = conn.reply(conn.send(op="invoke", agent=a, method="work", args=[0.0, "three"], stream=True), events)
    assert r["result"] == "three"
    kinds = [(e["type"], e.get("ahead")) for e in events if e["type"] != "output"]
    assert kinds[0][0] == "queued" and kinds[0][1] in (1, 2)
    assert ("queued", 1) in kinds and kinds[-1] == ("started", None)
    assert [e["line"] for e in events if e["type"] == "output"] == ["three: working for 0.0s", "three: done"]


def test_list_pages_with_a_cursor(daemon, conn: RawConn):
    names = [f'CounterAgent("page{i:02d}")' for i in range(25)]
    for n in names:
        conn.ok("invoke", agent=n, method="get", mode="trigger")
    seen, after = [], None
    while True:
        r = conn.ok("list", type="CounterAgent", limit=10, after=after)
        assert len(r["agents"]) <= 10
        seen += [a["agent_id"] for a in r["agents"]]
        after = r["next"]
        if after is None:
            break
    assert seen == sorted(names)
    from golemctl.client import Client

    with Client.connect(daemon.socket) as c:  # the client pages on its own
        assert [a["agent_id"] for a in c.list(type="CounterAgent")] == sorted(names)
