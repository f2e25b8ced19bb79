"""`golemctl agent oplog` against a real daemon: each entry's content (a call's
arguments, a result, a failure's code and message, cancel, interrupt, a retry
after a crash, durable effects), --from and --query, over the wire (RawConn,
written from docs/protocol.md) and through the real CLI (click's CliRunner).

One daemon for the module: each test uses agents of its own."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from golemctl.cli import cli
from golemd.model.effects import derived_key
from tests.helpers import DURABLE_AGENTS, EXAMPLES, TEST_AGENTS, DaemonProc, RawConn, running

DURABLE = DURABLE_AGENTS


@pytest.fixture(scope="module")
def d() -> Iterator[DaemonProc]:
    with running(apps=(EXAMPLES, TEST_AGENTS, DURABLE)) as daemon:
        yield daemon


@pytest.fixture
def c(d: DaemonProc) -> Iterator[RawConn]:
    conn = d.conn()
    yield conn
    conn.close()


def golemctl(d: DaemonProc, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--socket", d.socket, *args], prog_name="golemctl")


def oplog_json(d: DaemonProc, agent: str, *options: str) -> list[dict[str, Any]]:
    r = golemctl(d, "--format", "json", "agent", "oplog", agent, *options)
    assert r.exit_code == 0, r.stderr
    entries: list[dict[str, Any]] = json.loads(r.stdout)
    return entries


def by_kind(entries: list[dict[str, Any]], kind: str, key: str | None = None) -> dict[str, Any]:
    (entry,) = [e for e in entries if e["kind"] == kind and (key is None or e.get("idempotency_key") == key)]
    return entry


def text_line(d: DaemonProc, agent: str, kind: str, key: str) -> str:
    """The text view's line of the entry of this kind and key."""
    r = golemctl(d, "agent", "oplog", agent)
    assert r.exit_code == 0, r.stderr
    (line,) = [ln for ln in r.stdout.splitlines() if f" {kind} " in ln and f" {key} " in ln]
    return line


def wait_until_started(c: RawConn, rid: int, timeout: float = 30.0) -> None:
    """Read the stream of an awaited invoke sent with stream=True until its `started` event."""
    deadline = time.monotonic() + timeout
    while True:
        c.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            msg = c.recv()
        except TimeoutError:
            raise AssertionError(f"request {rid} did not start within {timeout}s") from None
        finally:
            c.sock.settimeout(30.0)
        if msg.get("id") == rid and msg.get("event", {}).get("type") == "started":
            return
        if msg.get("id") == rid and "event" not in msg:
            raise AssertionError(f"request {rid} ended before it started: {msg}")
        if msg.get("id") != rid:
            c.inbox.append(msg)


# -- the content of each kind -----------------------------------------------------


def test_an_invocation_shows_its_arguments_and_its_result(d, c):
    agent = 'CounterAgent("o-args")'
    r = golemctl(d, "agent", "invoke", "-i", "add-5", agent, "add", "5")
    assert r.exit_code == 0, r.stderr
    log = oplog_json(d, agent)
    assert by_kind(log, "enqueued", "add-5") == {
        "index": 2, "ts": by_kind(log, "enqueued")["ts"], "kind": "enqueued", "idempotency_key": "add-5",
        "method": "add", "args": [5]}
    done = by_kind(log, "completed", "add-5")
    assert done["result"] == 5 and done["method"] == "add" and "error" not in done
    assert [e["kind"] for e in log] == ["created", "enqueued", "started", "completed"]
    # a scheduled one shows when, and its timeout
    at = int(time.time()) + 3600
    c.ok("invoke", agent=agent, method="add", args=[1], idempotency_key="later", mode="trigger",
         schedule_at=at, timeout=7)
    later = by_kind(c.ok("oplog", agent=agent)["entries"], "enqueued", "later")
    assert (later["args"], later["schedule_at"], later["timeout"]) == ([1], at, 7)
    assert "(5)" in text_line(d, agent, "enqueued", "add-5")
    assert "-> 5" in text_line(d, agent, "completed", "add-5")
    assert "timeout 7s" in text_line(d, agent, "enqueued", "later")


def test_a_failure_shows_its_code_and_message(d, c):
    agent = 'CounterAgent("o-fail")'
    assert c.call("invoke", agent=agent, method="fail_after_add", args=[3],
                  idempotency_key="boom")["error"]["code"] == "INVOCATION_FAILED"
    failed = by_kind(oplog_json(d, agent), "failed", "boom")
    assert failed["error"] == {"code": "INVOCATION_FAILED", "message": "ValueError: refusing to keep +3"}
    assert "result" not in failed
    assert "INVOCATION_FAILED: ValueError: refusing to keep +3" in text_line(d, agent, "failed", "boom")


def test_cancel_and_interrupt_show_which_invocation(d, c):
    agent = 'SlowAgent("o-ctl")'
    rid = c.send(op="invoke", agent=agent, method="work", args=[60, "long"], idempotency_key="long",
                 stream=True)
    wait_until_started(c, rid)
    c.ok("invoke", agent=agent, method="work", args=[0, "queued"], idempotency_key="queued", mode="trigger")
    assert golemctl(d, "agent", "cancel-invocation", agent, "queued").exit_code == 0
    assert golemctl(d, "agent", "interrupt", agent).exit_code == 0
    assert c.reply(rid)["error"]["code"] == "INTERRUPTED"
    log = oplog_json(d, agent)
    canceled = by_kind(log, "canceled", "queued")
    assert canceled["method"] == "work" and "result" not in canceled and "error" not in canceled
    assert by_kind(log, "enqueued", "queued")["args"] == [0, "queued"]
    interrupted = by_kind(log, "interrupted")
    assert (interrupted["idempotency_key"], interrupted["method"]) == ("long", "work")
    assert interrupted["detail"] == "by the user: stopped, it runs again on resume"
    assert "by the user" in text_line(d, agent, "interrupted", "long")


def test_a_retry_after_a_crash_says_why(d, c, tmp_path):
    agent = 'Crashy("o-crash")'
    marker = str(tmp_path / "marker")
    with open(marker + ".die", "w") as f:
        f.write("1")  # its process dies on the first attempt
    assert c.ok("invoke", agent=agent, method="add_then_die", args=[4, marker],
                idempotency_key="crash")["result"] == 4
    log = oplog_json(d, agent)
    died, retried = by_kind(log, "process_died", "crash"), by_kind(log, "retried", "crash")
    assert died["index"] < retried["index"] < by_kind(log, "completed", "crash")["index"]
    assert retried["method"] == "add_then_die"
    assert retried["detail"].startswith("attempt 2 after ") and "SIGKILL" in retried["detail"], retried
    assert by_kind(log, "completed", "crash")["result"] == 4
    assert "SIGKILL" in text_line(d, agent, "retried", "crash")


def test_durable_effects_show_kind_target_and_result(d, c, tmp_path):
    shop, inventory = 'Shop("o-shop")', 'Inventory("o-inv")'
    c.ok("invoke", agent=inventory, method="add", args=["hat", 3])
    ledger = str(tmp_path / "ledger")
    got = c.ok("invoke", agent=shop, method="three", args=[ledger, inventory, "hat"], idempotency_key="o1")
    assert got["result"]["left"] == 2
    effects = [(e["kind"], e["effect"]) for e in oplog_json(d, shop) if e["kind"].startswith("effect")]
    kinds = [(k, eff["seq"], eff["kind"]) for k, eff in effects]
    assert kinds == [("effect", 0, "step"), ("effect", 1, "call"), ("effect_done", 1, "call"),
                     ("effect", 2, "step")]
    step1, call, call_done, step3 = (eff for _, eff in effects)
    assert step1 == {"seq": 0, "kind": "step", "target": "record", "request": {"fn": "record",
                     "args": [ledger, "step-1"]}, "result": "step-1"}
    callee_key = derived_key(shop, "o1", 1)
    assert call == {"seq": 1, "kind": "call", "target": inventory, "callee_key": callee_key,
                    "request": {"agent": inventory, "method": "reserve", "args": ["hat"]}}
    assert call_done == {**call, "result": 2}
    assert step3["result"] == "step-3:2"
    # the callee's own oplog has that invocation under that key
    callee = oplog_json(d, inventory, "--query", f"key:{callee_key}")
    assert [(e["kind"], e.get("args"), e.get("result")) for e in callee] == [
        ("enqueued", ["hat"], None), ("started", None, None), ("completed", None, 2)]
    r = golemctl(d, "agent", "oplog", shop, "--query", "effect:call")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()[1:]
    assert len(lines) == 2 and f'#1 call {inventory}.reserve("hat")' in lines[0]
    assert lines[1].endswith(f'#1 call {inventory}.reserve("hat") -> 2')


def test_an_effects_error_is_structured(d, c):
    shop = 'Shop("o-err")'
    got = c.ok("invoke", agent=shop, method="call", args=['Inventory("o-empty")', "reserve", ["hat"]])
    assert got["result"]["error"] == "INVOCATION_FAILED"
    (done,) = [e["effect"] for e in oplog_json(d, shop) if e["kind"] == "effect_done"]
    assert done["kind"] == "call" and done["target"] == 'Inventory("o-empty")'
    assert done["error"]["code"] == "INVOCATION_FAILED" and "no hat left" in done["error"]["message"]
    assert "result" not in done
    hits = oplog_json(d, shop, "--query", "code:INVOCATION_FAILED")
    assert [e["kind"] for e in hits] == ["effect_done"]


# -- --from and --query --------------------------------------------------------------


def test_from_and_query_filter_in_the_daemon(d, c):
    agent = 'CounterAgent("o-filter")'
    for i, key in enumerate(["f1", "f2", "f3"], 1):
        c.ok("invoke", agent=agent, method="add", args=[i], idempotency_key=key)
    c.call("invoke", agent=agent, method="fail_after_add", args=[9], idempotency_key="f4")
    full = oplog_json(d, agent)
    assert len(full) == 1 + 4 * 3
    # --from: the entries from that index on, with their indexes
    assert oplog_json(d, agent, "--from", "6") == full[5:]
    assert oplog_json(d, agent, "--from", "0") == full
    assert oplog_json(d, agent, "--from", "99") == []
    # --query: over the wire and through golemctl alike
    assert [e["index"] for e in oplog_json(d, agent, "--query", "kind:completed")] == [
        e["index"] for e in full if e["kind"] == "completed"]
    wire = c.ok("oplog", agent=agent, query="key:f2 -kind:started")["entries"]
    assert [(e["kind"], e["idempotency_key"]) for e in wire] == [("enqueued", "f2"), ("completed", "f2")]
    assert [e["idempotency_key"] for e in oplog_json(d, agent, "--query", '"refusing to keep"')] == ["f4"]
    assert [e["idempotency_key"] for e in oplog_json(d, agent, "--query", "args:3")] == ["f3"]
    assert [e["idempotency_key"] for e in oplog_json(d, agent, "--query", "result:6")] == ["f3"]
    # all together: from, then query, then the newest N of what is left
    got = oplog_json(d, agent, "--from", "3", "--query", "kind:enqueued", "--last", "2")
    assert [e["idempotency_key"] for e in got] == ["f3", "f4"]
    r = golemctl(d, "agent", "oplog", agent, "--query", "method:fail*")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1 + 3  # header, enqueued, started, failed


def test_a_bad_query_is_bad_request_on_the_wire_and_a_usage_error_in_golemctl(d, c):
    agent = 'CounterAgent("o-bad")'
    c.ok("invoke", agent=agent, method="increment")
    err = c.call("oplog", agent=agent, query="colour:blue")["error"]
    assert err["code"] == "BAD_REQUEST" and err["message"].startswith("bad query: unknown field 'colour'")
    assert c.call("oplog", agent=agent, query='"open')["error"]["code"] == "BAD_REQUEST"
    assert c.call("oplog", agent=agent, **{"from": -1})["error"]["code"] == "BAD_REQUEST"
    assert len(c.ok("oplog", agent=agent)["entries"]) == 4  # the connection stays usable
    r = golemctl(d, "agent", "oplog", agent, "--query", "colour:blue")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("error: USAGE: --query: unknown field 'colour'")
    r = golemctl(d, "--format", "json", "agent", "oplog", agent, "--query", 'error:"open')
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "USAGE"
    r = golemctl(d, "agent", "oplog", agent, "--from", "-1")
    assert r.exit_code == 2
