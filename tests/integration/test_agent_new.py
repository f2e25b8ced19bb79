"""`agent new` (the wire op `new`): an agent created without an invocation,
its constructor run at once, with environment variables of its own that its
process sees on every start (Golem's `golem agent new --env`)."""

from __future__ import annotations

from click.testing import CliRunner

from golemctl.cli import cli
from tests.helpers import DaemonProc, RawConn, wait_for

E = 'EnvReader("e")'


def test_new_runs_the_constructor_and_gives_the_process_its_environment(daemon: DaemonProc, conn: RawConn):
    r = conn.ok("new", agent=E, env={"GREETING": "hello", "MODE": "test"})
    assert r["created"] is True
    meta = r["agent"]
    assert meta["agent_id"] == E and meta["env_vars"] == {"GREETING": "hello", "MODE": "test"}
    assert meta["status"] == "Idle" and meta["pid"] is not None  # built, not invoked
    assert meta["completed_count"] == 0 and conn.ok("invocations", agent=E)["invocations"] == []
    assert conn.ok("invoke", agent=E, method="constructed_with")["result"] == "hello"
    # on every start: a new process after a crash sees them too
    conn.ok("simulate_crash", agent=E)
    assert conn.ok("invoke", agent=E, method="read", args=["MODE"])["result"] == "test"
    assert conn.meta(E)["env_vars"] == {"GREETING": "hello", "MODE": "test"}


def test_new_again_with_the_same_environment_changes_nothing_and_another_is_refused(conn: RawConn):
    conn.ok("new", agent=E, env={"A": "1"})
    again = conn.ok("new", agent=E, env={"A": "1"})
    assert again["created"] is False
    assert conn.err("new", agent=E, env={"A": "2"}) == "AGENT_EXISTS"
    assert conn.err("new", agent=E) == "AGENT_EXISTS"
    # an agent made by its first invocation has none, and `new` without env matches it
    conn.ok("invoke", agent='EnvReader("f")', method="read", args=["A"])
    assert conn.ok("new", agent='EnvReader("f")')["created"] is False
    assert conn.meta('EnvReader("f")')["env_vars"] == {}


def test_new_of_a_bad_agent_is_refused(conn: RawConn):
    r = conn.call("new", agent='BadInit("x")')
    assert r["error"]["code"] == "AGENT_FAILED", r
    assert conn.meta('BadInit("x")')["status"] == "Failed"  # as after a first invocation
    assert conn.err("new", agent='Nope("x")') == "UNKNOWN_TYPE"
    assert conn.err("new", agent='EnvReader(1, 2)') == "INVALID_AGENT_ID"
    assert conn.err("new", agent=E, env={"A=B": "1"}) == "BAD_REQUEST"
    assert conn.err("new", agent=E, env={"A": 1}) == "BAD_REQUEST"
    assert conn.meta(E) == {}


def test_the_environment_survives_a_restart(daemon: DaemonProc, conn: RawConn):
    conn.ok("new", agent=E, env={"GREETING": "again"})
    daemon.kill9()
    daemon.start()
    c2 = daemon.conn()
    assert c2.meta(E)["env_vars"] == {"GREETING": "again"}
    assert c2.ok("invoke", agent=E, method="read", args=["GREETING"])["result"] == "again"
    c2.close()


def test_golemctl_agent_new(daemon: DaemonProc, conn: RawConn):
    def run(*args: str):  # noqa: ANN202
        return CliRunner().invoke(cli, ["--socket", daemon.socket, *args], prog_name="golemctl")

    r = run("agent", "new", E, "--env", "GREETING=hi there", "--env", "EMPTY=")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"created {E}")
    assert conn.meta(E)["env_vars"] == {"GREETING": "hi there", "EMPTY": ""}
    r = run("agent", "new", E, "--env", "GREETING=hi there", "--env", "EMPTY=")
    assert r.exit_code == 0 and r.stdout.startswith("exists already")
    r = run("agent", "new", E)
    assert r.exit_code == 1 and "AGENT_EXISTS" in r.stderr
    r = run("agent", "new", 'EnvReader("g")', "--env", "NOEQUALS")
    assert r.exit_code == 2 and "NAME=VALUE" in r.stderr
    r = run("--format", "json", "agent", "get", E)
    assert '"env_vars"' in r.stdout
    wait_for(lambda: conn.meta(E)["status"] == "Idle", what="idle")


def test_list_filters_on_an_agents_environment_variables(conn: RawConn):
    conn.ok("new", agent='EnvReader("t")', env={"MODE": "test"})
    conn.ok("new", agent='EnvReader("p")', env={"MODE": "prod"})
    conn.ok("new", agent='EnvReader("n")')
    got = conn.ok("list", filters=["env.MODE = test"])["agents"]
    assert [a["agent_id"] for a in got] == ['EnvReader("t")']
    got = conn.ok("list", filters=["env.MODE != test"])["agents"]
    assert [a["agent_id"] for a in got] == ['EnvReader("p")']  # one without MODE matches no filter on it
