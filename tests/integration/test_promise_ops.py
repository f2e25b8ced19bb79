"""Durable promises from outside the agents (DESIGN.md §5): the wire ops
promise_complete, promise_get and promise_list, and `golemctl promise ...`,
against a real daemon running tests/agents/durableagents.py.

`Shop.approval(ledger)` makes a promise, writes `promise <ID>` to the
ledger in a step, waits on the promise and returns {"value": V, "id": ID}.
"""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    DURABLE_AGENTS,
    EXAMPLES,
    ROOT,
    TEST_AGENTS,
    DaemonProc,
    RawConn,
    running,
    wait_for,
)

DURABLE = DURABLE_AGENTS
GOLEMCTL = [sys.executable, "-m", "golemctl"]


@pytest.fixture
def daemon() -> Iterator[DaemonProc]:
    with running(apps=(EXAMPLES, TEST_AGENTS, DURABLE)) as d:
        yield d




def promise_in_ledger(ledger: Path, timeout: float = 20.0) -> str:
    """The ID the approval wrote to its ledger, once it did."""
    def found() -> str | None:
        try:
            lines = ledger.read_text().splitlines()
        except FileNotFoundError:
            return None
        ids = [line.split(" ", 1)[1] for line in lines if line.startswith("promise ")]
        assert len(ids) <= 1, lines  # the step ran once
        return ids[0] if ids else None

    return str(wait_for(found, timeout, what=f"a promise ID in {ledger}"))


def json_doc(run: Any, *cmd: str, exit_code: int = 0) -> Any:
    r = run("--format", "json", *cmd)
    assert r.exit_code == exit_code, (cmd, r.stdout, r.stderr)
    return json.loads(r.stdout)


def test_complete_an_awaited_approval_through_golemctl(daemon: DaemonProc, run: Any, tmp_path: Path):
    shop = 'Shop("cli")'
    ledger = tmp_path / "ledger"
    waiter = subprocess.Popen([*GOLEMCTL, "--socket", daemon.socket, "agent", "invoke", "-i", "ask-1",
                               shop, "approval", json.dumps(str(ledger))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        pid = promise_in_ledger(ledger)

        # Pending, with its agent and invocation; the agent waits on it.
        listed = json_doc(run, "promise", "list")
        assert [(p["promise_id"], p["agent_id"], p["completed"]) for p in listed] == [(pid, shop, False)]
        assert listed[0]["idempotency_key"] == "ask-1" and listed[0]["age_seconds"] >= 0
        assert "value" not in listed[0]
        assert [p["promise_id"] for p in json_doc(run, "promise", "list", "Shop( 'cli' )")] == [pid]
        assert json_doc(run, "promise", "list", 'Shop("other")') == []
        r = run("promise", "list", shop)
        assert r.exit_code == 0, r.stderr
        header, row = r.stdout.splitlines()
        assert header.split() == ["PROMISE", "ID", "AGENT", "ID", "AGE", "STATE"]
        assert row.split()[:2] == [pid, shop] and row.split()[-1] == "pending"
        # The ledger is written just before the wait: it shows a moment later.
        wait_for(lambda: json_doc(run, "agent", "get", shop)["waiting_for"] == {"promise": pid},
                 what="the agent to wait on the promise")
        assert waiter.poll() is None

        r = run("promise", "complete", pid, '{"ok": True, "by": "alice", "n": -1}')
        assert (r.exit_code, r.stdout) == (0, f"completed {pid}\n"), r.stderr
        out, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait(10)
    assert waiter.returncode == 0, err
    value = {"ok": True, "by": "alice", "n": -1}
    assert ast.literal_eval(out.splitlines()[-1]) == {"value": value, "id": pid}

    # The first completion wins.
    r = run("promise", "complete", pid, '"again"')
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith("error: ALREADY_COMPLETED: ") and pid in r.stderr
    assert json_doc(run, "promise", "complete", pid, "2", exit_code=1)["error"]["code"] == "ALREADY_COMPLETED"
    r = run("promise", "complete", "p-nobody-0", "1")
    assert r.exit_code == 1 and r.stderr.startswith("error: NOT_FOUND: ")
    r = run("promise", "get", "p-nobody-0")
    assert r.exit_code == 1 and r.stderr.startswith("error: NOT_FOUND: ")

    info = json_doc(run, "promise", "get", pid)
    assert info["completed"] is True and info["value"] == value
    assert (info["promise_id"], info["agent_id"], info["idempotency_key"]) == (pid, shop, "ask-1")
    assert info["completed_at"] >= info["created_at"]
    r = run("promise", "get", pid)
    assert r.exit_code == 0, r.stderr
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert lines["State"].strip() == "completed" and lines["Agent ID"].strip() == shop
    assert ast.literal_eval(lines["Value"].strip()) == value

    # Pending only by default; --all shows the completed one.
    assert json_doc(run, "promise", "list") == []
    assert run("promise", "list").stdout == "no promises\n"
    assert [(p["promise_id"], p["completed"], p["value"]) for p in json_doc(run, "promise", "list", "--all")] \
        == [(pid, True, value)]
    row = run("promise", "list", "--all", shop).stdout.splitlines()[1].split()
    assert row[:2] == [pid, shop] and row[-1] == "completed"
    assert ledger.read_text().splitlines() == [f"promise {pid}"]  # the step ran once


def test_value_that_looks_like_an_option(daemon: DaemonProc, run: Any, tmp_path: Path):
    c = daemon.conn()
    ledger = tmp_path / "ledger"
    c.ok("invoke", agent='Shop("neg")', method="approval", args=[str(ledger)], mode="trigger",
         idempotency_key="neg")
    pid = promise_in_ledger(ledger)
    r = run("promise", "complete", pid, "-5")
    assert r.exit_code == 0, r.stderr
    assert c.ok("invoke", agent='Shop("neg")', method="approval", args=[str(ledger)],
                idempotency_key="neg")["result"] == {"value": -5, "id": pid}
    c.close()


def test_wire_ops(daemon: DaemonProc, conn: RawConn, tmp_path: Path):
    shop = 'Shop("wire")'
    ledger = tmp_path / "ledger"
    conn.ok("invoke", agent=shop, method="approval", args=[str(ledger)], mode="trigger", idempotency_key="w")
    pid = promise_in_ledger(ledger)

    listed = conn.ok("promise_list", agent="Shop( 'wire' )")["promises"]
    assert [(p["promise_id"], p["agent_id"], p["idempotency_key"], p["completed"]) for p in listed] == \
        [(pid, shop, "w", False)]
    assert conn.ok("promise_list", agent='dev/Shop("wire")') == {"id": conn.next_id, "promises": []}
    got = conn.ok("promise_get", promise_id=pid)["promise"]
    assert got["completed"] is False and got["completed_at"] is None and "value" not in got

    # Two completions in flight at once: exactly one wins, and its value stays.
    values = {conn.send(op="promise_complete", promise_id=pid, value=v): v for v in (b"\x00yes", "no")}
    replies = {rid: conn.reply(rid) for rid in values}
    won = [rid for rid, r in replies.items() if "error" not in r]
    assert len(won) == 1 and replies[won[0]] == {"id": won[0], "promise_id": pid, "completed": True}
    assert [r["error"]["code"] for r in replies.values() if "error" in r] == ["ALREADY_COMPLETED"]
    value = values[won[0]]

    done = conn.ok("invoke", agent=shop, method="approval", args=[str(ledger)], idempotency_key="w")
    assert done["result"] == {"value": value, "id": pid}
    got = conn.ok("promise_get", promise_id=pid)["promise"]
    assert got["completed"] is True and got["value"] == value
    assert conn.err("promise_complete", promise_id=pid) == "ALREADY_COMPLETED"
    assert conn.ok("promise_list")["promises"] == []
    assert [p["promise_id"] for p in conn.ok("promise_list", all=True, agent=None)["promises"]] == [pid]

    # Who completed it, as for other changes (the whole log: log() is its tail).
    assert f"promise_complete {pid} by pid" in Path(daemon.log_path).read_text(errors="replace")
    assert conn.err("promise_complete", promise_id="p-unknown-0", value=1) == "NOT_FOUND"
    assert conn.err("promise_get", promise_id="p-unknown-0") == "NOT_FOUND"
    assert conn.err("promise_list", agent="Shop(") == "INVALID_AGENT_ID"

    # A wrong shape: BAD_REQUEST, and the connection stays usable.
    for op, fields in [("promise_complete", {}), ("promise_complete", {"promise_id": 5}),
                       ("promise_complete", {"promise_id": pid, "extra": 1}),
                       ("promise_get", {}), ("promise_get", {"promise_id": None}),
                       ("promise_get", {"promise_id": [pid]}),
                       ("promise_list", {"all": "yes"}), ("promise_list", {"agent": 5})]:
        r = conn.call(op, **fields)
        assert r["error"]["code"] == "BAD_REQUEST", (op, fields, r)
    assert conn.ok("promise_get", promise_id=pid)["promise"]["value"] == value


def test_a_waiting_approval_survives_a_restart(daemon: DaemonProc, tmp_path: Path):
    shop = 'Shop("restart")'
    ledger = tmp_path / "ledger"
    c = daemon.conn()
    c.ok("invoke", agent=shop, method="approval", args=[str(ledger)], mode="trigger", idempotency_key="r")
    pid = promise_in_ledger(ledger)
    c.close()
    assert daemon.stop(signal.SIGTERM) == 0
    daemon.assert_no_strays()
    daemon.start()

    c = daemon.conn()
    assert [p["promise_id"] for p in c.ok("promise_list", agent=shop)["promises"]] == [pid]
    assert c.ok("promise_complete", promise_id=pid, value="after restart")["completed"] is True
    done = c.ok("invoke", agent=shop, method="approval", args=[str(ledger)], idempotency_key="r")
    assert done["result"] == {"value": "after restart", "id": pid}
    assert ledger.read_text().splitlines() == [f"promise {pid}"]  # replayed, not run again
    c.close()


def test_completing_wakes_a_suspended_waiter(tmp_path: Path):
    shop = 'Shop("parked")'
    ledger = tmp_path / "ledger"
    with running(apps=(EXAMPLES, TEST_AGENTS, DURABLE), args=("--suspend-after", "0.3")) as d:
        c = d.conn()
        c.ok("invoke", agent=shop, method="approval", args=[str(ledger)], mode="trigger", idempotency_key="s")
        pid = promise_in_ledger(ledger)
        meta = wait_for(lambda: (m := c.meta(shop)).get("status") == "Suspended" and m, what="Suspended")
        assert meta["pid"] is None and meta["waiting_for"] == {"promise": pid}
        assert c.ok("promise_complete", promise_id=pid, value=[1, "two"])["completed"] is True
        done = c.ok("invoke", agent=shop, method="approval", args=[str(ledger)], idempotency_key="s")
        assert done["result"] == {"value": [1, "two"], "id": pid}
        assert ledger.read_text().splitlines() == [f"promise {pid}"]
        c.close()
