"""Durable execution against a real daemon (DESIGN.md §5): agent-to-agent
calls and cycles, promises across restarts, durable sleep, suspension of
waiting agents, nondeterminism, and what becomes of a callee when its
caller times out, is interrupted or is deleted (docs/semantics.md)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.helpers import (
    DURABLE_AGENTS,
    EXAMPLES,
    TEST_AGENTS,
    DaemonProc,
    RawConn,
    running,
    wait_for,
)

DURABLE = DURABLE_AGENTS
APPS = (EXAMPLES, TEST_AGENTS, DURABLE)
SHOP = 'Shop("s")'


@pytest.fixture
def d() -> Iterator[DaemonProc]:
    with running(apps=APPS, args=("--suspend-after", "0.3")) as daemon:
        yield daemon


@pytest.fixture
def c(d: DaemonProc) -> Iterator[RawConn]:
    conn = d.conn()
    yield conn
    conn.close()


def lines(path: str) -> list[str]:
    return open(path).read().split("\n")[:-1] if os.path.exists(path) else []


def node(name: str) -> str:
    return f'Node("{name}")'


# -- calls and cycles ----------------------------------------------------------------


def test_an_awaited_call_returns_the_callees_result_and_a_trigger_its_key(c):
    c.ok("invoke", agent='Inventory("main")', method="add", args=["hat", 2])
    got = c.ok("invoke", agent=SHOP, method="call", args=['Inventory("main")', "reserve", ["hat"]])
    assert got["result"] == 1
    key = c.ok("invoke", agent=SHOP, method="trigger", args=['Inventory("main")', "add", ["cap", 5]])["result"]
    assert key.startswith("call-")
    # the callee's invocation runs under that key: awaiting it gives its outcome
    assert c.ok("invoke", agent='Inventory("main")', method="add", args=["cap", 5],
                idempotency_key=key)["result"] == 5


def test_a_callees_error_reaches_the_caller_as_a_remote_error(c):
    got = c.ok("invoke", agent=SHOP, method="call", args=['Inventory("empty")', "reserve", ["hat"]])
    assert got["result"]["error"] == "INVOCATION_FAILED"
    assert "no hat left" in got["result"]["message"]
    got = c.ok("invoke", agent=SHOP, method="call", args=['Inventory("x")', "nope", []])
    assert got["result"]["error"] == "UNKNOWN_METHOD"


@pytest.mark.parametrize("path", [["a"], ["b", "a"], ["b", "c", "a"]])
def test_cycles_of_length_one_two_and_three_fail_fast(c, path):
    t0 = time.monotonic()
    got = c.ok("invoke", agent=node("a"), method="chain", args=[[node(p) for p in path]])["result"]
    # the call that closes the cycle fails at once; its caller sees CALL_CYCLE
    assert got[-1] == "CALL_CYCLE" and got[0] == "a", got
    assert len(got) == len(path) + 1
    assert time.monotonic() - t0 < 10  # an order of magnitude: nothing waited for a timeout
    assert c.ok("invoke", agent=node("a"), method="visited")["result"] == 1


def test_a_diamond_is_no_cycle(c):
    got = c.ok("invoke", agent=node("top"), method="fan", args=[[node("left"), node("right")], node("bottom")])
    assert got["result"] == [["left", "bottom"], ["right", "bottom"]]
    assert c.ok("invoke", agent=node("bottom"), method="visited")["result"] == 2


def test_a_call_across_environments_names_the_environment(c):
    got = c.ok("invoke", agent='prod/Shop("s")', method="call", args=['Inventory("main")', "add", ["x", 1]])
    assert got["result"] == 1
    # in the caller's environment by default
    assert c.meta('prod/Inventory("main")')["env"] == "prod"
    assert c.meta('Inventory("main")') == {}
    got = c.ok("invoke", agent='prod/Shop("s")', method="call", args=['dev/Inventory("main")', "add", ["x", 1]])
    assert got["result"] == 1 and c.meta('dev/Inventory("main")')["env"] == "dev"


# -- promises ----------------------------------------------------------------------


def _promise_of(ledger: str) -> str:
    found = wait_for(lambda: [line.split()[1] for line in lines(ledger) if line.startswith("promise ")],
                     what="the promise to be made")
    return found[0]


def test_a_promise_completed_by_another_agent_wakes_its_waiter_once(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    key = c.ok("invoke", agent=SHOP, method="approval", args=[ledger], mode="trigger")["idempotency_key"]
    pid = _promise_of(ledger)
    meta = wait_for(lambda: c.meta(SHOP) if c.meta(SHOP).get("waiting_for") else None, what="waiting_for")
    assert meta["waiting_for"] == {"promise": pid}
    assert meta["current_invocation"]["idempotency_key"] == key
    assert c.ok("invoke", agent='Shop("other")', method="complete", args=[pid, "yes"])["result"] == "ok"
    done = c.ok("invoke", agent=SHOP, method="approval", args=[ledger], idempotency_key=key)
    assert done["result"] == {"value": "yes", "id": pid}
    assert lines(ledger) == [f"promise {pid}"]  # the step ran once, replayed after the suspension
    # completed twice; unknown
    assert c.ok("invoke", agent='Shop("other")', method="complete", args=[pid, "no"])["result"] == "ALREADY_COMPLETED"
    assert c.ok("invoke", agent='Shop("other")', method="complete", args=["p-nope-0", 1])["result"] == "NOT_FOUND"


def test_a_waiting_agent_is_suspended_and_holds_no_process(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    key = c.ok("invoke", agent=SHOP, method="approval", args=[ledger], mode="trigger")["idempotency_key"]
    pid = _promise_of(ledger)
    meta = wait_for(lambda: c.meta(SHOP) if c.meta(SHOP)["status"] == "Suspended" else None,
                    what="suspension after suspend_after")
    assert meta["pid"] is None and meta["waiting_for"] == {"promise": pid}
    assert meta["current_invocation"]["idempotency_key"] == key
    # its queue waits, and a queued call can be canceled
    queued = c.ok("invoke", agent=SHOP, method="orders_made", mode="trigger")["idempotency_key"]
    assert c.meta(SHOP)["pending_invocation_count"] == 1
    assert c.ok("cancel", agent=SHOP, idempotency_key=queued)["canceled"] is True
    c.ok("invoke", agent='Shop("other")', method="complete", args=[pid, 7])
    assert c.ok("invoke", agent=SHOP, method="approval", args=[ledger], idempotency_key=key)["result"]["value"] == 7
    assert lines(ledger) == [f"promise {pid}"]


@pytest.mark.parametrize("when", ["before", "during", "after"])
def test_a_promise_completed_around_a_restart(d, c, tmp_path, when):
    ledger = str(tmp_path / "ledger")
    key = c.ok("invoke", agent=SHOP, method="approval", args=[ledger], mode="trigger")["idempotency_key"]
    pid = _promise_of(ledger)
    if when == "before":
        c.ok("invoke", agent='Shop("other")', method="complete", args=[pid, "early"])
    if when == "during":
        # The ledger's line is written inside the step, before the step and the
        # wait are journaled: the kill must find the agent parked.
        wait_for(lambda: c.meta(SHOP).get("waiting_for") == {"promise": pid}, what="the wait")
        c.fence('Shop("fence")', "orders_made")
    if when == "after":
        d.stop()
    else:
        d.kill9()
    d.start()
    c2 = d.conn()
    if when == "during":
        # completed while its agent waits parked, before anything else happens
        assert c2.meta(SHOP)["status"] == "Suspended"  # recovered waiting, with no process
        c2.ok("invoke", agent='Shop("other")', method="complete", args=[pid, "during"])
    elif when == "after":
        c2.ok("invoke", agent='Shop("other")', method="complete", args=[pid, "after"])
    want = {"before": "early", "during": "during", "after": "after"}[when]
    got = c2.ok("invoke", agent=SHOP, method="approval", args=[ledger], idempotency_key=key)
    assert got["result"] == {"value": want, "id": pid}
    assert lines(ledger) == [f"promise {pid}"]
    c2.close()


def test_a_deleted_agent_takes_its_promises_with_it(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    c.ok("invoke", agent=SHOP, method="approval", args=[ledger], mode="trigger")
    pid = _promise_of(ledger)
    c.ok("delete", agent=SHOP)
    assert c.ok("invoke", agent='Shop("other")', method="complete", args=[pid, 1])["result"] == "NOT_FOUND"


def test_a_promise_wait_times_out_durably(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    assert c.ok("invoke", agent=SHOP, method="approval", args=[ledger, 0.2])["result"] == "timed out"


# -- durable sleep ---------------------------------------------------------------------


def test_a_sleep_survives_a_restart_and_waits_only_for_the_rest(d, c, tmp_path):
    ledger = str(tmp_path / "ledger")
    key = c.ok("invoke", agent=SHOP, method="nap", args=[5.0, ledger], mode="trigger")["idempotency_key"]
    until = wait_for(lambda: (c.meta(SHOP).get("waiting_for") or {}).get("until"), what="the sleep")
    queued = c.ok("invoke", agent=SHOP, method="orders_made", mode="trigger")["idempotency_key"]
    doomed = c.ok("invoke", agent=SHOP, method="orders_made", args=[], mode="trigger",
                  idempotency_key="doomed")["idempotency_key"]
    assert c.ok("cancel", agent=SHOP, idempotency_key=doomed)["canceled"] is True  # it waits, cancelable
    d.kill9()
    d.start()
    c2 = d.conn()
    meta = c2.meta(SHOP)
    assert meta["waiting_for"] == {"until": until}  # the journaled wake-up time, not a new one
    assert meta["pending_invocation_count"] == 1
    got = c2.ok("invoke", agent=SHOP, method="nap", args=[5.0, ledger], idempotency_key=key)
    assert got["result"] == "after-sleep"
    assert time.time() >= until
    assert lines(ledger) == ["before-sleep", "after-sleep"]
    # the call queued behind the sleep ran after it
    assert c2.ok("invoke", agent=SHOP, method="orders_made", idempotency_key=queued)["result"] == 0
    c2.close()


# -- nondeterminism --------------------------------------------------------------------


def test_a_rerun_that_makes_another_effect_fails_with_nondeterminism(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    r = c.call("invoke", agent=SHOP, method="nondet", args=[ledger])
    assert r["error"]["code"] == "NONDETERMINISM", r
    assert "step" in r["error"]["message"] and "sleep" in r["error"]["message"]
    assert lines(ledger + ".steps") == ["first"]  # not replayed as if it matched
    # the agent goes on from its last state
    assert c.ok("invoke", agent=SHOP, method="orders_made")["result"] == 0


# -- callers that stop waiting -----------------------------------------------------------


def test_a_callers_timeout_leaves_the_callee_to_finish(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    r = c.call("invoke", agent='Shop("caller")', method="call", args=['Shop("callee")', "nap", [1.0, ledger]],
               timeout=0.3)
    assert r["error"]["code"] == "TIMEOUT", r
    wait_for(lambda: lines(ledger) == ["before-sleep", "after-sleep"], what="the callee to finish")
    assert c.meta('Shop("caller")')["status"] != "Running"


def test_an_interrupted_caller_gets_the_callees_outcome_on_resume(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    key = c.ok("invoke", agent='Shop("caller")', method="call", mode="trigger",
               args=['Shop("callee")', "nap", [1.0, ledger]])["idempotency_key"]
    wait_for(lambda: c.meta('Shop("caller")').get("waiting_for"), what="the caller to wait")
    c.ok("interrupt", agent='Shop("caller")')
    wait_for(lambda: c.meta('Shop("caller")')["status"] == "Interrupted", what="the interrupt")
    wait_for(lambda: lines(ledger) == ["before-sleep", "after-sleep"], what="the callee to finish")
    c.ok("resume", agent='Shop("caller")')
    got = c.ok("invoke", agent='Shop("caller")', method="call", args=['Shop("callee")', "nap", [1.0, ledger]],
               idempotency_key=key)
    assert got["result"] == "after-sleep"
    assert lines(ledger) == ["before-sleep", "after-sleep"]  # the callee ran once


def test_a_deleted_caller_leaves_the_callee_to_finish(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    c.ok("invoke", agent='Shop("caller")', method="call", mode="trigger",
         args=['Shop("callee")', "nap", [0.5, ledger]])
    wait_for(lambda: c.meta('Shop("caller")').get("waiting_for"), what="the caller to wait")
    c.ok("delete", agent='Shop("caller")')
    wait_for(lambda: lines(ledger) == ["before-sleep", "after-sleep"], what="the callee to finish")
    assert c.meta('Shop("caller")') == {}


# -- the oplog and streaming -------------------------------------------------------------


def test_the_oplog_shows_each_effect_and_a_stream_shows_calls_as_they_happen(c, tmp_path):
    c.ok("invoke", agent='Inventory("main")', method="add", args=["hat", 3])
    ledger = str(tmp_path / "ledger")
    rid = c.send(op="invoke", agent=SHOP, method="three", args=[ledger, 'Inventory("main")', "hat"], stream=True)
    events: list[dict] = []
    r = c.reply(rid, events)
    assert r["result"]["left"] == 2
    kinds = [(e["type"], e.get("kind")) for e in events if e["type"].startswith("effect")]
    assert kinds == [("effect", "step"), ("effect_done", None), ("effect", "call"), ("effect_done", None),
                     ("effect", "step"), ("effect_done", None)]
    call = next(e for e in events if e.get("kind") == "call")
    assert 'Inventory("main").reserve' in call["detail"]
    log = c.ok("oplog", agent=SHOP)["entries"]
    effects = [e for e in log if e["kind"].startswith("effect")]
    assert len(effects) >= 3 and all(e["idempotency_key"] == r["idempotency_key"] for e in effects)
    assert any('reserve' in e["detail"] and e["detail"].endswith("-> 2") for e in effects)


def test_golemctl_invoke_shows_the_calls_a_caller_makes(d, c, tmp_path):
    from click.testing import CliRunner

    from golemctl.cli import cli

    c.ok("invoke", agent='Inventory("main")', method="add", args=["hat", 3])
    ledger = str(tmp_path / "ledger")
    r = CliRunner().invoke(cli, ["--socket", d.socket, "agent", "invoke", SHOP, "three", repr(ledger),
                                 "'Inventory(\"main\")'", "'hat'"], prog_name="golemctl")
    assert r.exit_code == 0, r.output
    assert "-> effect 1: call Inventory(\"main\").reserve('hat')" in r.stderr
    assert "<- effect 1: 2" in r.stderr
    assert r.stdout.splitlines()[-1] == "{'a': 'step-1', 'left': 2, 'c': 'step-3:2', 'orders': 1}"


def test_a_wait_on_a_deleted_agents_promise_ends_not_found(c, tmp_path):
    ledger = str(tmp_path / "ledger")
    c.ok("invoke", agent=SHOP, method="approval", args=[ledger], mode="trigger")
    pid = _promise_of(ledger)
    key = c.ok("invoke", agent='Shop("other")', method="wait_for_promise", args=[pid],
               mode="trigger")["idempotency_key"]
    wait_for(lambda: c.meta('Shop("other")').get("waiting_for"), what="the other agent to wait")
    c.ok("delete", agent=SHOP)
    got = c.ok("invoke", agent='Shop("other")', method="wait_for_promise", args=[pid], idempotency_key=key)
    assert got["result"] == "NOT_FOUND"


def test_an_effect_whose_journal_write_fails_runs_again_from_the_saved_state(tmp_path):
    ledger, flag = str(tmp_path / "ledger"), str(tmp_path / "fail-commit")
    with running(apps=APPS, env={"GOLEMD_FAIL_COMMIT": flag}) as d:
        c = d.conn()
        got = c.ok("invoke", agent=SHOP, method="unsaved_step", args=[ledger, flag])
        assert got["result"] == "step"
        assert not os.path.exists(flag)  # the failure happened
        # the step ran twice (its first result was never journaled), its
        # effect is journaled once, and the state changed once
        assert lines(ledger) == ["step", "step"]
        effects = [e for e in c.ok("oplog", agent=SHOP)["entries"] if e["kind"] == "effect"]
        assert len(effects) == 1
        assert c.ok("invoke", agent=SHOP, method="orders_made")["result"] == 1
        c.close()
