"""@agent(cpu_limit=SECONDS): an invocation that uses more CPU time fails
CPU_LIMIT, its state rolled back, and the agent goes on."""

from __future__ import annotations

from tests.helpers import RawConn

S = 'Spinner("s")'


def test_an_invocation_over_its_cpu_limit_fails_and_the_agent_goes_on(conn: RawConn):
    r = conn.call("invoke", agent=S, method="spin", args=[30])
    assert r["error"]["code"] == "CPU_LIMIT", r
    assert "cpu_limit of 1 s" in r["error"]["message"]
    assert conn.ok("invoke", agent=S, method="count")["result"] == 0  # rolled back
    assert conn.ok("invoke", agent=S, method="spin", args=[0.05])["result"] == 1  # the next call has its own second
    assert conn.ok("invoke", agent=S, method="spin", args=[0.6])["result"] == 2
    assert conn.ok("invoke", agent=S, method="spin", args=[0.6])["result"] == 3  # per invocation, not in all
    meta = conn.meta(S)
    assert meta["failed_count"] == 1 and meta["retry_count"] == 0  # a failure, not a crash


def test_catching_the_limit_does_not_escape_it(conn: RawConn):
    r = conn.call("invoke", agent=S, method="spin_and_catch", args=[30])
    assert r["error"]["code"] == "CPU_LIMIT", r


def test_types_shows_the_limit(conn: RawConn):
    types = {t["name"]: t for t in conn.ok("types")["types"]}
    assert types["Spinner"]["cpu_limit"] == 1
    assert types["CounterAgent"]["cpu_limit"] is None
