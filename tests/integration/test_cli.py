"""golemctl's output shapes and exit statuses (DESIGN.md section 3), the real CLI
against a real daemon, through click's CliRunner."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.helpers import DaemonProc, wait_for

C1 = 'CounterAgent("c1")'




def test_awaited_result_alone_on_last_line_output_on_stderr(run):
    r = run("agent", "invoke", "-i", "k1", "EchoAgent()", "echo", '[-5, -1.5, "x", [1, -2]]')
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "[-5, -1.5, 'x', [1, -2]]\n"
    assert "idempotency key: k1" in r.stderr
    r = run("agent", "invoke", "Printer()", "say", '"working"')
    assert r.stdout.splitlines()[-1] == "1" and "working 0" in r.stderr and "working" not in r.stdout


def test_negative_numbers_and_double_dash(run):
    assert run("agent", "invoke", C1, "add", "-5").stdout == "-5\n"
    assert run("agent", "invoke", C1, "add", "--", "-2").stdout == "-7\n"


def test_no_stream(run):
    r = run("agent", "invoke", "--no-stream", "Printer()", "say", '"quiet"')
    assert r.exit_code == 0 and "quiet" not in r.stderr and r.stdout == "1\n"


def test_generated_keys_are_uuids(run):
    r = run("agent", "invoke", "-t", "-i", "-", C1, "increment")
    assert r.exit_code == 0
    uuid.UUID(r.stdout.strip())
    r = run("--format", "json", "agent", "invoke", C1, "increment")
    uuid.UUID(json.loads(r.stdout)["idempotency_key"])


def test_triggered_text_and_json(run):
    r = run("agent", "invoke", "-t", "-i", "job-1", C1, "increment")
    assert r.exit_code == 0 and r.stdout == "job-1\n"
    r = run("--format", "json", "agent", "invoke", "-t", "-i", "job-2", C1, "increment")
    assert json.loads(r.stdout) == {"idempotency_key": "job-2", "status": "pending"}


def test_schedule_at_becomes_unix_seconds(run):
    at = datetime.fromtimestamp(int(time.time()) + 3600, UTC)
    r = run("agent", "invoke", "-t", "-i", "later", "--schedule-at", at.isoformat(), C1, "add", "1")
    assert r.exit_code == 0, r.stderr
    items = json.loads(run("--format", "json", "agent", "invocations", C1).stdout)
    assert [(i["idempotency_key"], i["status"], i["schedule_at"]) for i in items] == \
        [("later", "scheduled", at.timestamp())]


def test_json_bytes_as_base64(run):
    r = run("--format", "json", "agent", "invoke", "EchoAgent()", "echo", "{1: b'\\x00\\xff', 's': [b'a']}")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["result"] == {"1": "AP8=", "s": ["YQ=="]}
    assert "idempotency key" not in r.stderr


def test_invocation_failed_prints_traceback_then_error(run):
    r = run("--format", "json", "agent", "invoke", C1, "fail_after_add", "3")
    assert r.exit_code == 1
    assert r.stderr.index("Traceback") < r.stderr.index("error: INVOCATION_FAILED: ValueError: refusing to keep +3")
    doc = json.loads(r.stdout)
    assert doc["error"]["code"] == "INVOCATION_FAILED" and doc["error"]["details"]["type"] == "ValueError"


def test_daemon_errors_exit_1(run):
    r = run("agent", "get", 'CounterAgent("nobody")')
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr == 'error: AGENT_NOT_FOUND: agent CounterAgent("nobody") does not exist\n'
    r = run("--format", "json", "agent", "cancel-invocation", C1, "k")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == "AGENT_NOT_FOUND"


def test_json_documents_of_every_command(run):
    assert run("agent", "invoke", C1, "increment").exit_code == 0
    run("agent", "invoke", "-t", "-i", "busy", 'SlowAgent("s")', "work", "30")
    run("agent", "invoke", "-t", "-i", "q", 'SlowAgent("s")', "work", "0")

    def doc(*cmd: str) -> Any:
        r = run("--format", "json", *cmd)
        assert r.exit_code == 0, (cmd, r.stderr)
        return json.loads(r.stdout)

    meta = doc("agent", "get", C1)
    assert meta["agent_id"] == C1 and meta["completed_count"] == 1
    assert [m["agent_id"] for m in doc("agent", "list")] == sorted([C1, 'SlowAgent("s")'])
    wait_for(lambda: doc("agent", "get", 'SlowAgent("s")')["status"] == "Running")
    assert [i["idempotency_key"] for i in doc("agent", "invocations", 'SlowAgent("s")')] == ["busy", "q"]
    assert doc("agent", "cancel-invocation", 'SlowAgent("s")', "q") == {"idempotency_key": "q", "canceled": True}
    assert doc("agent", "interrupt", 'SlowAgent("s")')["status"] == "Interrupted"
    assert doc("agent", "resume", 'SlowAgent("s")')["agent_id"] == 'SlowAgent("s")'
    assert doc("agent", "interrupt", "--recover", C1)["agent_id"] == C1
    assert doc("agent", "simulate-crash", C1)["agent_id"] == C1
    assert [e["kind"] for e in doc("agent", "oplog", C1)][0] == "created"
    assert len(doc("agent", "oplog", C1, "--last", "2")) == 2
    assert "CounterAgent" in {t["name"] for t in doc("types")}
    status = doc("daemon", "status")
    assert {"version", "pid", "uptime", "agents", "live_workers"} <= set(status) and status["agents"] == 2
    assert doc("daemon", "reload") == {"ok": True}
    assert doc("agent", "delete", 'SlowAgent("s")')["agent_id"] == 'SlowAgent("s")'
    assert run("agent", "get", 'SlowAgent("s")').exit_code == 1


def test_list_filters_and_text_views(run):
    run("agent", "invoke", C1, "increment")
    run("agent", "invoke", 'dev/CounterAgent("c2")', "increment")
    r = run("--format", "json", "agent", "list", "--env", "dev", "--type", "CounterAgent", "--status", "idle")
    assert [m["agent_id"] for m in json.loads(r.stdout)] == ['dev/CounterAgent("c2")']
    out = run("agent", "get", C1).stdout
    assert f"Agent ID:            {C1}" in out and "Status:              Idle" in out
    assert 'Arguments:           "c1"' in out
    lines = run("agent", "list").stdout.splitlines()
    assert lines[0].split() == ["AGENT", "ID", "STATUS", "PENDING", "CURRENT", "PID", "LAST", "ACTIVE"]
    assert lines[1].startswith(C1) and "Idle" in lines[1]
    assert run("agent", "interrupt", C1).stdout == f"interrupted {C1} (status: Interrupted)\n"


def test_stream_no_follow_json_lines(run):
    run("agent", "invoke", "Printer()", "say", '"l"', "3")
    r = run("--format", "json", "agent", "stream", "--no-follow", "Printer()")
    assert r.exit_code == 0
    assert [json.loads(line)["line"] for line in r.stdout.splitlines()] == ["l 0", "l 1", "l 2"]
    r = run("agent", "stream", "-n", "--last", "1", "Printer()")
    assert r.stdout.count("stdout") == 1 and "l 2" in r.stdout


def test_async_client_pipelines_on_one_connection_against_golemd(daemon: DaemonProc):
    import asyncio

    from golemctl.aio import AsyncClient

    async def main() -> list[str]:
        c = await AsyncClient.connect(daemon.socket)
        done: list[str] = []

        async def call(agent: str, args: list[Any], tag: str) -> None:
            r = await c.invoke(agent, "work", args)
            assert r["result"] == tag
            done.append(tag)

        try:
            await asyncio.gather(call('SlowAgent("slow")', [1.0, "slow"], "slow"),
                                 *(call(f'SlowAgent("fast{i}")', [0.0, f"fast{i}"], f"fast{i}") for i in range(20)))
        finally:
            await c.close()
        return done

    done = asyncio.run(main())
    # One connection, 21 requests in flight: the fast ones overtook the slow one.
    assert done[-1] == "slow" and sorted(done[:-1]) == sorted(f"fast{i}" for i in range(20))


def test_blocking_client_events_errors_and_connection_reuse(daemon: DaemonProc):
    from golemctl.client import Client
    from golemd.model.errors import Code, GolemError

    with Client.connect(daemon.socket) as c:
        # An error reply leaves the connection usable.
        with pytest.raises(GolemError) as e:
            c.get('CounterAgent("nobody")')
        assert e.value.code == Code.AGENT_NOT_FOUND
        # Events for a request come before its final reply.
        events: list[dict[str, Any]] = []
        r = c.invoke("Printer()", "say", ["ev", 3], stream=True, on_event=events.append)
        assert r["result"] == 3
        assert [ev["line"] for ev in events if ev["type"] == "output"] == ["ev 0", "ev 1", "ev 2"]
        # Results may be maps with int keys; a real TOO_LATE comes back as such.
        assert c.invoke("EchoAgent()", "echo", [{1: "one"}])["result"] == {1: "one"}
        c.invoke(C1, "increment", idempotency_key="done")
        with pytest.raises(GolemError) as e:
            c.cancel(C1, "done")
        assert e.value.code == Code.TOO_LATE
        assert [a["agent_id"] for a in c.list(type="CounterAgent")] == [C1]


def test_simulate_crash_on_an_idle_agent_prints_the_status_it_leaves(run):
    assert run("agent", "invoke", C1, "increment").stdout == "1\n"
    before = json.loads(run("--format", "json", "agent", "get", C1).stdout)
    r = run("--format", "json", "agent", "simulate-crash", C1)
    assert r.exit_code == 0, r.stderr
    printed = json.loads(r.stdout)
    after = json.loads(run("--format", "json", "agent", "get", C1).stdout)
    assert printed["status"] == after["status"] == "Idle"
    assert printed["pid"] == after["pid"] and printed["pid"] not in (None, before["pid"])
    r = run("agent", "simulate-crash", C1)
    assert r.stdout == f"crashed and recovering {C1} (status: Idle)\n"
    assert run("agent", "invoke", C1, "get").stdout == "1\n"  # its state survived
    oplog = run("--format", "json", "agent", "oplog", C1)
    assert [e["detail"] for e in json.loads(oplog.stdout) if e["kind"] == "process_died"] == \
        ["simulated crash while idle; recovering at once"] * 2
