"""What only the PostgreSQL store does: its schema and version, one daemon
per database, its connection going away (a terminated backend, as a
restart of the server does to it), a full disk. What every store does is
in test_contract.py; a restart of the server under a running daemon is in
tests/integration/test_pgstore.py."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator

import psycopg
import pytest

from golemd.model.errors import Code, GolemError
from golemd.storage import pgschema
from golemd.storage.base import StoreUnavailable
from golemd.storage.postgres import PostgresStore
from golemd.testing_pg import PgCluster
from tests.storage.helpers import A, FakeLoop, Told, agent_row, inv_row


class LostLog:
    """PostgresStore's on_lost, recording instead of exiting."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture
def lost() -> LostLog:
    return LostLog()


@pytest.fixture
def store(pg_url: str, lost: LostLog, loop: FakeLoop) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url, on_lost=lost)
    s.attach(loop.hooks())
    yield s
    s.close()


def committed(url: str, sql: str) -> list[tuple[object, ...]]:
    """What another connection reads: the committed state."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def terminate(url: str, store: PostgresStore) -> None:
    """End the store's backend as a restart of the server would, and wait until it is gone."""
    pid = store.link.conn.info.backend_pid
    assert committed(url, f"SELECT pg_terminate_backend({pid}, 10000)") == [(True,)]


def _catalog(url: str) -> list[tuple[object, ...]]:
    return committed(url, "SELECT table_name, column_name, data_type, is_nullable, column_default, collation_name "
                          "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2") + \
        committed(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1") + \
        committed(url, "SELECT relname, reloptions::text FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                       "ORDER BY 1")


# -- the schema --------------------------------------------------------------------

def test_the_schema_is_created_at_the_current_version(store, pg_url):
    assert committed(pg_url, "SELECT version FROM golemd_schema") == [(pgschema.SCHEMA_VERSION,)]
    tables = {r[0] for r in committed(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"golemd_schema", "agents", "invocations", "events", "effects", "promises"}
    types = dict(committed(pg_url, "SELECT column_name, data_type FROM information_schema.columns "
                                   "WHERE table_name = 'invocations'"))
    assert (types["id"], types["args"], types["created_at"], types["seq"]) == (
        "bigint", "bytea", "double precision", "bigint")


def test_a_new_store_reads_as_one_migrated_step_by_step(pg_cluster: PgCluster, monkeypatch):
    fresh = pg_cluster.create_database()
    PostgresStore(fresh).close()
    stepped = pg_cluster.create_database()
    monkeypatch.setattr(pgschema, "CURRENT_VERSION", -1)  # never the one-step path
    PostgresStore(stepped).close()
    assert _catalog(fresh) == _catalog(stepped)


def test_reopening_keeps_the_version_and_a_newer_schema_is_refused(store, pg_url):
    store.close()
    PostgresStore(pg_url).close()
    assert committed(pg_url, "SELECT version FROM golemd_schema") == [(pgschema.SCHEMA_VERSION,)]
    committed(pg_url, f"UPDATE golemd_schema SET version = {pgschema.SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer golemd"):
        PostgresStore(pg_url)


# -- one daemon per database, and servers that are not there ----------------------------

def test_a_second_daemon_on_the_database_is_refused_and_a_reader_is_not(store, pg_url):
    with pytest.raises(StoreUnavailable, match="another golemd uses PostgreSQL 127.0.0.1:"):
        PostgresStore(pg_url)
    reader = PostgresStore(pg_url, exclusive=False)
    reader.close()
    store.close()
    PostgresStore(pg_url).close()  # the lock went with the first one's connection


def test_a_server_that_is_not_there_is_waited_for_then_said():
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL 127.0.0.1:1/nothing"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/nothing", connect_wait=0.5)
    assert 0.25 < time.monotonic() - t0 < 5  # it tried again, for about connect_wait


def test_a_database_that_does_not_exist_is_said_at_once(pg_cluster: PgCluster):
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match="does not exist"):
        PostgresStore(pg_cluster.url("no_such_db"), connect_wait=30)
    assert time.monotonic() - t0 < 5  # refused, not waited for


def test_the_password_is_never_in_what_the_store_says(pg_cluster: PgCluster):
    url = pg_cluster.url("no_such_db").replace("postgres@", "postgres:s3cret@")
    with pytest.raises(StoreUnavailable) as info:
        PostgresStore(url, connect_wait=0)
    assert "s3cret" not in str(info.value)


# -- the connection going away ----------------------------------------------------------

def test_a_connection_cut_while_idle_is_made_again_unnoticed(store, pg_url, lost):
    store.insert_agent(agent_row())
    store.commit_now()
    terminate(pg_url, store)
    assert [r["agent_id"] for r in store.load_agents()] == [A]  # a read outside a transaction
    terminate(pg_url, store)
    told = Told()
    store.insert_invocation(inv_row("k1"))  # queued: nothing of it reached the old connection
    store.on_commit(told("k1"))
    store.commit_now()
    assert told.heard == [("k1", None)] and lost.reasons == []
    assert committed(pg_url, "SELECT key FROM invocations") == [("k1",)]


def test_a_connection_cut_with_a_transaction_on_the_server_is_lost(store, pg_url, lost):
    """Its writes were sent (a read went after them): the server dropped them
    with the connection. The daemon would exit (on_lost); here the store
    tells every caller, and goes on on a new connection."""
    store.insert_agent(agent_row())
    store.commit_now()
    told = Told()
    store.hold()
    store.insert_invocation(inv_row("k1"))
    store.on_commit(told("k1"))
    assert store.get_invocation(A, "k1") is not None  # sent, in the open transaction
    terminate(pg_url, store)
    store.release()
    store.commit_now()
    assert told.heard == [("k1", Code.INTERNAL)]
    assert len(lost.reasons) == 1 and "cut with a transaction open" in lost.reasons[0]
    assert committed(pg_url, "SELECT count(*) FROM invocations") == [(0,)]
    store.insert_invocation(inv_row("k2"))
    store.commit_now()
    assert committed(pg_url, "SELECT key FROM invocations") == [("k2",)]


def test_a_read_on_a_connection_cut_under_an_open_transaction_fails_its_group(store, pg_url, lost):
    told = Told()
    store.insert_invocation(inv_row("k1"))
    store.on_commit_idle(told("k1"))  # no idle hook: committed at once
    store.hold()
    store.insert_invocation(inv_row("k2", seq=1))
    store.on_commit(told("k2"))
    store.get_invocation(A, "k2")
    terminate(pg_url, store)
    with pytest.raises(GolemError) as info:
        store.get_invocation(A, "k1")
    assert info.value.code == Code.INTERNAL
    assert told.heard == [("k1", None), ("k2", Code.INTERNAL)] and len(lost.reasons) == 1
    store.release()
    assert store.get_invocation(A, "k1")["status"] == "pending"  # the committed one, on a new connection
    assert store.get_invocation(A, "k2") is None


# -- a full disk ------------------------------------------------------------------------

@pytest.fixture
def small_tablespace(pg_cluster: PgCluster) -> Iterator[tuple[str, str]]:
    """A database whose tables live on a 1 MiB tmpfs: (its URL, the mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tempfile.mkdtemp(prefix="golemd-pgfull-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    owner = os.stat(pg_cluster.base)
    os.chown(mount, owner.st_uid, owner.st_gid)
    name = f"small_{os.getpid()}"
    try:
        pg_cluster.execute(f"CREATE TABLESPACE {name} LOCATION '{mount}'")
        url = pg_cluster.create_database()
        yield f"{url}?options=-c%20default_tablespace%3D{name}", mount
        pg_cluster.drop_database(url.rsplit("/", 1)[1])
        pg_cluster.execute(f"DROP TABLESPACE {name}")
    finally:
        subprocess.run(["umount", "-l", mount])
        os.rmdir(mount)


def test_a_full_disk_fails_the_group_with_storage_full_and_the_store_goes_on(small_tablespace, lost):
    url, _mount = small_tablespace
    store = PostgresStore(url, on_lost=lost)
    store.attach(FakeLoop().hooks())
    try:
        store.insert_agent(agent_row())
        store.commit_now()
        told = Told()
        store.hold()
        for i in range(200):  # 200 x 16 KiB: more than the 1 MiB the tables may take
            store.insert_invocation(inv_row(f"k{i}", seq=i, args=os.urandom(16384)))
            store.on_commit(told(f"k{i}"))
        store.update_agent(A, snapshot=b"new")
        store.release()
        assert {code for _name, code in told.heard} == {Code.STORAGE_FULL} and len(told.heard) == 200
        assert store.get_invocation(A, "k0") is None and store.saved_snapshot(A) is None
        assert lost.reasons == []
        store.insert_invocation(inv_row("small", seq=500))
        store.commit_now()  # what fits is committed: the store goes on
        assert committed(url, "SELECT key FROM invocations") == [("small",)]
    finally:
        store.close()
