"""A real golemd on PostgreSQL (`--store URL`): choosing the store, one
daemon per database, and a restart of PostgreSQL under a running daemon,
idle or under load (docs/operations.md, "PostgreSQL store")."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from golemd.storage.postgres import EXIT_STORE_LOST
from golemd.testing_pg import PgCluster
from tests.helpers import DaemonProc, RawConn, daemon_process, running


def _golemd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "golemd.cli", *args], capture_output=True, text=True, timeout=60)


def test_a_store_that_is_no_postgresql_url_is_a_configuration_error(tmp_path):
    bad = _golemd("--state-dir", str(tmp_path), "--store", "mysql://u:secret@h/db", "--check-config")
    assert bad.returncode == 2 and "store must be a postgresql:// (or postgres://) URL" in bad.stderr
    assert "secret" not in bad.stderr
    both = _golemd("--state-dir", str(tmp_path), "--store", "postgresql://h/db", "--journal", "memory",
                   "--check-config")
    assert both.returncode == 2 and "journal = memory" in both.stderr
    shown = _golemd("--state-dir", str(tmp_path), "--store", "postgresql://u:secret@h/db", "--check-config")
    assert shown.returncode == 0 and "store = 'postgresql://u:***@h/db'" in shown.stdout
    toml = tmp_path / "golemd.toml"
    toml.write_text('store = "postgres://h/db"\n')
    assert "store = 'postgres://h/db'" in _golemd("--config", str(toml), "--check-config").stdout


def test_a_daemon_on_sqlite_never_loads_psycopg(daemon: DaemonProc):
    if daemon.store_url is not None:
        pytest.skip("this run's daemons are on PostgreSQL (GOLEMD_TEST_STORE)")
    c = daemon.conn()
    assert c.ok("invoke", agent='CounterAgent("light")', method="increment")["result"] == 1
    c.close()
    maps = {m.path for m in daemon_process(daemon).memory_maps()}
    assert not any("psycopg" in path or "libpq" in path for path in maps)


def test_a_daemon_on_postgresql_keeps_everything_across_restarts(pg_url):
    with running(args=("--store", pg_url)) as d:
        c = d.conn()
        a = 'CounterAgent("pg")'
        for i in range(5):
            assert c.ok("invoke", agent=a, method="increment", idempotency_key=f"k{i}")["result"] == i + 1
        c.ok("invoke", agent=a, method="add", args=[10], mode="trigger", idempotency_key="later",
             schedule_at=time.time() + 3600)
        c.close()
        d.kill9()
        d.assert_no_strays()
        d.start()
        c = d.conn()
        assert c.ok("get", agent=a)["agent"]["completed_count"] == 5
        assert c.ok("invoke", agent=a, method="increment", idempotency_key="k2")["result"] == 3  # stored
        assert c.ok("invoke", agent=a, method="increment")["result"] == 6
        assert [i["idempotency_key"] for i in c.ok("invocations", agent=a)["invocations"]] == ["later"]
        c.close()
    from golemd.storage.postgres import PostgresStore

    left = PostgresStore(pg_url)  # what the next daemon reads
    try:
        assert [r["completed_count"] for r in left.load_agents()] == [6]
    finally:
        left.close()


def test_a_second_daemon_on_the_same_database_is_refused(pg_url):
    with running(args=("--store", pg_url)):
        second = DaemonProc(args=("--store", pg_url))
        with pytest.raises(AssertionError, match="exited with 1"):
            second.start(timeout=30)
        assert "another golemd uses PostgreSQL" in second.log()


def test_a_database_that_does_not_exist_stops_the_start_at_once(pg_cluster: PgCluster):
    d = DaemonProc(args=("--store", pg_cluster.url("no_such_database")))
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="exited with 1"):
        d.start(timeout=30)
    assert time.monotonic() - t0 < 15
    assert 'database "no_such_database" does not exist' in d.log()


# -- PostgreSQL restarted under a running daemon ----------------------------------------

@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of the test's own: it restarts it, which the session's others must not see."""
    with PgCluster() as cluster:
        yield cluster


def test_a_restart_of_postgresql_under_an_idle_daemon_goes_unnoticed(own_cluster: PgCluster):
    with running(args=("--store", own_cluster.create_database())) as d:
        c = d.conn()
        a = 'CounterAgent("idle")'
        assert c.ok("invoke", agent=a, method="increment")["result"] == 1
        pid = d.proc.pid
        own_cluster.restart()
        assert c.ok("invoke", agent=a, method="increment")["result"] == 2
        assert c.ok("get", agent=a)["agent"]["completed_count"] == 2
        assert d.proc.pid == pid and d.proc.poll() is None
        assert "connected to PostgreSQL" in d.log() and "again" in d.log()
        c.close()


AGENTS = 3
CALLS = 200  # per agent, 5 ms each: PostgreSQL restarts while they run


def _send_all(c: RawConn, agent: str) -> dict[int, str]:
    return {c.send(op="invoke", agent=agent, method="slow_append", args=[f"e{i}", 0.005],
                   idempotency_key=f"e{i}"): f"e{i}" for i in range(CALLS)}


def _answers(c: RawConn, sent: dict[int, str], after_first: threading.Thread | None = None) -> dict[str, object]:
    """Each key's answer: its result, or its error code; none for those
    after the daemon hung up. A socket timeout (a caller left hanging) fails
    the test. `after_first` is started once the first answer came."""
    out: dict[str, object] = {}
    for rid, key in sent.items():
        try:
            r = c.reply(rid)
        except ConnectionError:
            break
        out[key] = r["result"] if "result" in r else r["error"]["code"]
        if after_first is not None and not after_first.is_alive() and len(out) == 10:
            after_first.start()
    return out


def test_a_restart_of_postgresql_under_load_loses_nothing_and_hangs_no_one(own_cluster: PgCluster):
    """Calls pipelined on three agents; PostgreSQL restarted while they run.
    Every caller hears (a result, an error, or its connection closing: the
    daemon exits rather than guess what a cut connection committed) within
    the socket's timeout; then, the daemon started again as systemd would,
    every call sent again under its key: each ran exactly once, and every
    result a caller was given is the one kept."""
    with running(args=("--store", own_cluster.create_database())) as d:
        agents = [f'Journal("load{i}")' for i in range(AGENTS)]
        conns = [RawConn(d.socket, timeout=60) for _ in agents]
        for c, a in zip(conns, agents, strict=True):
            c.ok("invoke", agent=a, method="all")  # warm: calls start as they are journaled
        sent = [_send_all(c, a) for c, a in zip(conns, agents, strict=True)]
        restart = threading.Thread(target=own_cluster.restart, args=("fast",))
        heard = [_answers(c, s, restart if i == 0 else None) for i, (c, s) in enumerate(zip(conns, sent, strict=True))]
        restart.join(60)
        for c in conns:
            c.close()
        answered = [{k: v for k, v in h.items() if isinstance(v, int)} for h in heard]
        assert sum(map(len, answered)) < AGENTS * CALLS, "every call was done before the restart"
        if all(len(h) == CALLS for h in heard):  # it went on: what failed was refused, as on a full disk
            assert all(isinstance(v, int) or v == "INTERNAL" for h in heard for v in h.values()), heard
        else:  # it hung up on the callers: it is exiting (its sockets close as it dies)
            assert d.proc.wait(30) == EXIT_STORE_LOST, d.log()
            assert "exiting; a restart recovers from what PostgreSQL committed" in d.log()
            d.assert_no_strays()  # its workers went with it
            d.start()
        c = RawConn(d.socket, timeout=60)
        for a, given in zip(agents, answered, strict=True):
            results = {f"e{i}": c.ok("invoke", agent=a, method="slow_append", args=[f"e{i}", 0.005],
                                     idempotency_key=f"e{i}")["result"] for i in range(CALLS)}
            assert sorted(results.values()) == list(range(1, CALLS + 1)), a
            assert sorted(c.ok("invoke", agent=a, method="all")["result"]) == sorted(results), a  # each once
            assert {k: results[k] for k in given} == given, a  # what a caller heard is what was kept
        c.close()
