"""Invocations against a real daemon: awaited, triggered, FIFO, failures, rollback."""

from __future__ import annotations

import threading

from tests.helpers import RawConn, wait_for

C1 = 'CounterAgent("c1")'


def test_awaited_invoke_returns_result_and_creates_agent(conn: RawConn):
    assert conn.err("get", agent=C1) == "AGENT_NOT_FOUND"
    r = conn.ok("invoke", agent=C1, method="increment", args=[])
    assert r["result"] == 1 and isinstance(r["idempotency_key"], str)
    assert conn.ok("invoke", agent="CounterAgent('c1')", method="add", args=[4])["result"] == 5
    meta = conn.ok("get", agent="CounterAgent( 'c1' )")["agent"]
    assert meta["agent_id"] == C1 and meta["env"] == "default" and meta["args"] == ["c1"]


def test_metadata_has_every_contract_field(conn: RawConn):
    conn.ok("invoke", agent=C1, method="increment")
    meta = conn.ok("get", agent=C1)["agent"]
    for field in ("agent_id", "type", "env", "args", "status", "pending_invocation_count",
                  "current_invocation", "pid", "created_at", "last_active_at", "completed_count",
                  "failed_count", "retry_count", "last_error", "memory_rss_bytes", "cpu_seconds"):
        assert field in meta, field
    assert meta["status"] == "Idle" and meta["pid"] > 0 and meta["memory_rss_bytes"] > 0
    assert meta["completed_count"] == 1 and meta["current_invocation"] is None


def test_environments_are_separate_agents(conn: RawConn):
    conn.ok("invoke", agent='dev/CounterAgent("c1")', method="add", args=[10])
    assert conn.ok("invoke", agent=C1, method="get")["result"] == 0
    meta = conn.ok("get", agent="dev/CounterAgent('c1')")["agent"]
    assert meta["agent_id"] == 'dev/CounterAgent("c1")' and meta["env"] == "dev"
    assert {a["agent_id"] for a in conn.ok("list", env="dev")["agents"]} == {'dev/CounterAgent("c1")'}


def test_triggered_invocations_run_in_order(conn: RawConn):
    agent = 'Journal("order")'
    keys = [f"k{i}" for i in range(30)]
    for k in keys:
        r = conn.ok("invoke", agent=agent, method="append", args=[k], mode="trigger", idempotency_key=k)
        assert r == {"id": r["id"], "idempotency_key": k, "status": "pending"}
    wait_for(lambda: conn.ok("get", agent=agent)["agent"]["completed_count"] == 30, 20)
    assert conn.ok("invoke", agent=agent, method="all")["result"] == keys


def test_agents_run_in_parallel(daemon):
    results = {}

    def call(name: str) -> None:
        c = daemon.conn()
        results[name] = c.ok("invoke", agent=f'SlowAgent("{name}")', method="work", args=[2.0, name])
        c.close()

    threads = [threading.Thread(target=call, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r["result"] for r in results.values()) == ["a", "b", "c"]
    # They overlapped: by the daemon's own clock, all three started before any ended.
    c = daemon.conn()
    logs = [c.ok("oplog", agent=f'SlowAgent("{n}")')["entries"] for n in ("a", "b", "c")]
    c.close()
    started = [e["ts"] for log in logs for e in log if e["kind"] == "started"]
    ended = [e["ts"] for log in logs for e in log if e["kind"] == "completed"]
    assert len(started) == len(ended) == 3 and max(started) < min(ended)


def test_method_that_raises_fails_and_rolls_back(conn: RawConn):
    conn.ok("invoke", agent=C1, method="add", args=[2])
    r = conn.call("invoke", agent=C1, method="fail_after_add", args=[5])
    err = r["error"]
    assert err["code"] == "INVOCATION_FAILED"
    assert "ValueError" in err["message"] and "refusing to keep +5" in err["message"]
    assert err["details"]["type"] == "ValueError" and "Traceback" in err["details"]["traceback"]
    assert conn.ok("invoke", agent=C1, method="get")["result"] == 2  # the +5 was rolled back
    meta = conn.ok("get", agent=C1)["agent"]
    assert meta["failed_count"] == 1 and "refusing" in meta["last_error"] and meta["status"] == "Idle"


def test_refusals_before_anything_runs(conn: RawConn):
    assert conn.err("invoke", agent="Nope()", method="x") == "UNKNOWN_TYPE"
    assert conn.err("invoke", agent=C1, method="nope") == "UNKNOWN_METHOD"
    assert conn.err("invoke", agent=C1, method="_private") == "UNKNOWN_METHOD"
    assert conn.err("invoke", agent=C1, method="add", args=[]) == "INVALID_ARGUMENTS"
    assert conn.err("invoke", agent=C1, method="add", args=[1, 2]) == "INVALID_ARGUMENTS"
    assert conn.err("invoke", agent=C1, method="add", args=["x"]) == "INVALID_ARGUMENTS"
    assert conn.err("invoke", agent='CounterAgent("a", "b")', method="get") == "INVALID_AGENT_ID"
    assert conn.err("invoke", agent="CounterAgent(os.system('x'))", method="get") == "INVALID_AGENT_ID"
    assert conn.err("invoke", agent="Counter Agent()", method="get") == "INVALID_AGENT_ID"
    # Nothing was created by any of these.
    assert conn.ok("list")["agents"] == []


def test_singleton_and_any_msgpack_values(conn: RawConn):
    value = {"a": [1, 2.5, None, True], "b": b"\x00\xff", "n": -3}
    assert conn.ok("invoke", agent="EchoAgent()", method="echo", args=[value])["result"] == value
    assert conn.ok("invoke", agent="EchoAgent()", method="echo")["result"] is None


def test_unserializable_result_fails_cleanly(conn: RawConn):
    r = conn.call("invoke", agent="Unpicklable()", method="bad_result")
    assert r["error"]["code"] == "SNAPSHOT_FAILED"
    r = conn.call("invoke", agent="Unpicklable()", method="grab_lock")
    assert r["error"]["code"] == "SNAPSHOT_FAILED" and "state" in r["error"]["message"]
    assert conn.ok("invoke", agent="Unpicklable()", method="ok_value")["result"] == 1


def test_constructor_failure_makes_agent_failed(conn: RawConn):
    agent = 'BadInit("boom")'
    r = conn.call("invoke", agent=agent, method="hello")
    assert r["error"]["code"] == "AGENT_FAILED" and "cannot start: boom" in r["error"]["message"]
    meta = conn.ok("get", agent=agent)["agent"]
    assert meta["status"] == "Failed" and "cannot start" in meta["last_error"]
    assert conn.err("invoke", agent=agent, method="hello") == "AGENT_FAILED"
    conn.ok("delete", agent=agent)
    assert conn.err("get", agent=agent) == "AGENT_NOT_FOUND"


def test_ephemeral_agent_gets_a_fresh_instance(conn: RawConn):
    for _ in range(3):
        assert conn.ok("invoke", agent="StatelessAgent()", method="call")["result"] == 1


def test_custom_snapshot_hooks_survive_a_crash(conn: RawConn):
    agent = 'Snap("s")'
    conn.ok("invoke", agent=agent, method="add", args=["a"])
    assert conn.ok("invoke", agent=agent, method="add", args=["b"])["result"] == ["a", "b"]
    conn.ok("simulate_crash", agent=agent)
    assert conn.ok("invoke", agent=agent, method="add", args=["c"])["result"] == ["a", "b", "c"]
    assert conn.ok("invoke", agent=agent, method="loads")["result"] == 1


def test_pipelined_requests_answer_out_of_order(conn: RawConn):
    slow = conn.send(op="invoke", agent='SlowAgent("p")', method="work", args=[1.5, "slow"])
    fast = conn.send(op="invoke", agent=C1, method="increment")
    first = conn.recv()
    while "event" in first:
        first = conn.recv()
    assert first["id"] == fast and first["result"] == 1
    assert conn.reply(slow)["result"] == "slow"


def test_stream_events_during_awaited_invoke(conn: RawConn):
    events: list[dict] = []
    rid = conn.send(op="invoke", agent="Printer()", method="say", args=["hi", 3], stream=True)
    r = conn.reply(rid, events)
    assert r["result"] == 3
    lines = [e["line"] for e in events if e["type"] == "output"]
    assert lines == ["hi 0", "hi 1", "hi 2"]
    got: list[dict] = []
    assert conn.reply(conn.send(op="stream", agent="Printer()"), got)["ended"] == "done"
    assert [e["line"] for e in got] == ["hi 0", "hi 1", "hi 2"]


def test_async_methods_run_and_roll_back(conn: RawConn):
    assert conn.ok("invoke", agent="AsyncAgent()", method="add_later", args=[2])["result"] == 2
    assert conn.ok("invoke", agent="AsyncAgent()", method="add_later", args=[3])["result"] == 5
    err = conn.call("invoke", agent="AsyncAgent()", method="fail_later")["error"]
    assert err["code"] == "INVOCATION_FAILED" and err["details"]["type"] == "KeyError"
    assert conn.ok("invoke", agent="AsyncAgent()", method="add_later", args=[0])["result"] == 5


def test_an_app_file_may_share_a_name_with_a_module(tmp_path):
    from tests.helpers import running

    app = tmp_path / "random.py"  # the stdlib's `random` is already imported
    app.write_text("from golemd import agent\n\n@agent\nclass Dice:\n"
                   "    def __init__(self):\n        self.rolls = 0\n"
                   "    def roll(self) -> int:\n        self.rolls += 1\n        return self.rolls\n"
                   "    def stdlib_random(self) -> bool:\n        import random\n"
                   "        return hasattr(random, 'randint')\n")
    with running(apps=(str(app),)) as d:
        c = d.conn()
        assert c.ok("invoke", agent="Dice()", method="roll")["result"] == 1
        c.ok("simulate_crash", agent="Dice()")  # the state is pickled by module name
        assert c.ok("invoke", agent="Dice()", method="roll")["result"] == 2
        assert next(t for t in c.ok("types")["types"] if t["name"] == "Dice")["module"] == "golemd_app_random"
        assert c.ok("invoke", agent="Dice()", method="stdlib_random")["result"] is True  # not shadowed
        c.close()


def test_a_burst_in_one_write_runs_in_order_per_agent(conn: RawConn):
    """Many requests read at once (they share one enqueue commit), over agents
    that are warm and cold, awaited and triggered: each agent runs its own in
    order, every caller gets its own answer, and every generated key is a
    distinct version-4 UUID."""
    import uuid

    import msgpack

    agents = [f'CounterAgent("burst{i}")' for i in range(5)]
    conn.ok("invoke", agent=agents[0], method="increment")  # one warm, the rest cold
    frames, ids = [], []
    for n in range(40):
        conn.next_id += 1
        ids.append(conn.next_id)
        mode = "trigger" if n % 7 == 3 else "await"
        frames.append(msgpack.packb({"v": 1, "id": conn.next_id, "op": "invoke", "agent": agents[n % 5],
                                     "method": "increment", "mode": mode}))
    conn.send_raw(b"".join(frames))
    replies = {rid: conn.reply(rid) for rid in ids}
    keys = [r["idempotency_key"] for r in replies.values()]
    assert len(set(keys)) == 40 and all(uuid.UUID(k).version == 4 for k in keys)
    for a in range(len(agents)):
        results = [replies[rid]["result"] for n, rid in enumerate(ids) if n % 5 == a and "result" in replies[rid]]
        assert results == sorted(results) and len(set(results)) == len(results)  # FIFO, one at a time
    for a, agent in enumerate(agents):
        expect = 8 + (1 if a == 0 else 0)
        wait_for(lambda agent=agent, expect=expect: conn.meta(agent)["completed_count"] == expect,
                 what=f"{agent} to finish its burst")
    assert conn.ok("invoke", agent=agents[1], method="get")["result"] == 8
