"""agent revert (the wire op `revert`): the state goes back to before the
last invocations, which are forgotten (their keys run again), through the
wire and the real CLI, across a restart."""

from __future__ import annotations

from click.testing import CliRunner

from golemctl.cli import cli
from tests.helpers import DaemonProc, RawConn, wait_for

C = 'CounterAgent("r")'


def adds(conn: RawConn, *ns: int) -> list[str]:
    return [conn.ok("invoke", agent=C, method="add", args=[n], idempotency_key=f"add-{i}-{n}")["idempotency_key"]
            for i, n in enumerate(ns)]


def test_revert_the_last_invocations(conn: RawConn):
    keys = adds(conn, 1, 10, 100)
    r = conn.ok("revert", agent=C, number_of_invocations=2)
    assert r["reverted"] == keys[1:]
    assert r["agent"]["completed_count"] == 1
    assert conn.ok("invoke", agent=C, method="get")["result"] == 1
    # forgotten: the same key runs again, on the reverted state
    again = conn.ok("invoke", agent=C, method="add", args=[10], idempotency_key=keys[1])
    assert again["result"] == 11
    log = conn.ok("oplog", agent=C)["entries"]
    assert any(e["kind"] == "reverted" and keys[2] in e.get("detail", "") for e in log)


def test_revert_to_an_oplog_index(conn: RawConn):
    keys = adds(conn, 1, 2, 4)
    log = conn.ok("oplog", agent=C)["entries"]
    second_done = next(e["index"] for e in log if e["kind"] == "completed" and e.get("idempotency_key") == keys[1])
    r = conn.ok("revert", agent=C, last_oplog_index=second_done)
    assert r["reverted"] == [keys[2]]
    assert conn.ok("invoke", agent=C, method="get")["result"] == 3
    assert conn.ok("revert", agent=C, last_oplog_index=10_000)["reverted"] == []


def test_a_failed_invocation_is_reverted_too_and_everything_goes_back_to_the_start(conn: RawConn):
    adds(conn, 5)
    assert "error" in conn.call("invoke", agent=C, method="fail_after_add", args=[7])
    r = conn.ok("revert", agent=C, number_of_invocations=2)
    assert len(r["reverted"]) == 2 and r["agent"]["failed_count"] == 0
    assert conn.ok("invoke", agent=C, method="get")["result"] == 0  # the constructor's state


def test_revert_refusals(conn: RawConn):
    adds(conn, 1)
    assert conn.err("revert", agent=C, number_of_invocations=5) == "BAD_REQUEST"
    assert conn.err("revert", agent=C) == "BAD_REQUEST"
    assert conn.err("revert", agent=C, number_of_invocations=1, last_oplog_index=2) == "BAD_REQUEST"
    assert conn.err("revert", agent=C, number_of_invocations=0) == "BAD_REQUEST"
    assert conn.err("revert", agent='CounterAgent("none")', number_of_invocations=1) == "AGENT_NOT_FOUND"
    conn.ok("invoke", agent=C, method="busy", args=[30], mode="trigger")
    wait_for(lambda: conn.meta(C)["status"] == "Running", what="busy")
    assert conn.err("revert", agent=C, number_of_invocations=1) == "TOO_LATE"
    conn.ok("interrupt", agent=C)


def test_a_reverted_state_survives_a_restart(daemon: DaemonProc, conn: RawConn):
    adds(conn, 1, 2)
    conn.ok("revert", agent=C, number_of_invocations=1)
    daemon.kill9()
    daemon.start()
    c2 = daemon.conn()
    assert c2.ok("invoke", agent=C, method="get")["result"] == 1
    c2.close()


def test_golemctl_agent_revert(daemon: DaemonProc, conn: RawConn):
    def run(*args: str):  # noqa: ANN202
        return CliRunner().invoke(cli, ["--socket", daemon.socket, *args], prog_name="golemctl")

    keys = adds(conn, 1, 2, 3)
    r = run("agent", "revert", C, "--number-of-invocations", "1")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"reverted {C}: 1 invocation forgotten") and keys[2] in r.stdout
    assert run("agent", "invoke", C, "get").stdout.strip() == "3"
    assert run("agent", "revert", C).exit_code == 2
    r = run("agent", "revert", C, "--number-of-invocations", "9")
    assert r.exit_code == 1 and "BAD_REQUEST" in r.stderr


def test_revert_gives_a_failed_agent_another_chance(conn: RawConn):
    p = 'Poisonable("p")'
    conn.ok("invoke", agent=p, method="set", args=["fine"])
    conn.ok("invoke", agent=p, method="set", args=["poison"])  # its state cannot be loaded again
    # The crash recovers at once, from the poisoned state: the agent fails there,
    # with no invocation of its own, and refuses the next one (not journaled).
    assert conn.ok("simulate_crash", agent=p)["agent"]["status"] == "Failed"
    r = conn.call("invoke", agent=p, method="get")
    assert r["error"]["code"] == "AGENT_FAILED", r
    assert conn.meta(p)["status"] == "Failed"
    r = conn.ok("revert", agent=p, number_of_invocations=1)  # the poisoning set
    assert len(r["reverted"]) == 1 and conn.meta(p)["status"] != "Failed"
    assert conn.ok("invoke", agent=p, method="get")["result"] == "fine"


def test_a_state_too_large_to_keep_per_invocation_cannot_be_reverted_past(conn: RawConn):
    j = 'Journal("big")'
    conn.ok("invoke", agent=j, method="append", args=["x" * 10_000])  # over revert_snapshot_bytes (4096)
    conn.ok("invoke", agent=j, method="append", args=["y"])
    r = conn.call("revert", agent=j, number_of_invocations=1)  # back to the 10 KB state: not kept
    assert r["error"]["code"] == "TOO_LATE" and "revert_snapshot_bytes" in r["error"]["message"]
    conn.ok("revert", agent=j, number_of_invocations=2)  # back to the constructor's: known
    assert conn.ok("invoke", agent=j, method="all")["result"] == []
