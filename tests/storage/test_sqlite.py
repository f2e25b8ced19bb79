"""What only the SQLite store does: its file (schema, WAL, migrations, freed
pages given back), how it files an agent's rows, and its own failure paths.
What every store does is in test_contract.py."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from golemd.model.errors import Code, GolemError
from golemd.storage import commits, schema, sqlite
from golemd.storage.base import LoopHooks
from golemd.storage.schema import SCHEMA_VERSION
from golemd.storage.sqlite import SqliteStore
from tests.storage.helpers import A, B, FakeLoop, Told, agent_row, copy_sqlite, inv_row


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "golemd.db")


@pytest.fixture
def store(path) -> Iterator[SqliteStore]:
    s = SqliteStore(path)
    yield s
    s.close()


def raw(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """What a restart after a crash would read, in SQL (helpers.copy_sqlite)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "copy.db")
        copy_sqlite(path, copy)
        db = sqlite3.connect(copy)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


def _keys(store: SqliteStore, agent_id: str = A) -> set[str]:
    return {r[0] for r in store.db.execute("SELECT key FROM invocations WHERE agent_id = ?", (agent_id,))}


# -- the file ----------------------------------------------------------------

def test_schema_is_created(store, path):
    assert SCHEMA_VERSION == 7
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agents", "invocations", "events"} <= tables
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]


def _master(path: str) -> list[tuple[Any, ...]]:
    return sorted(raw(path, "SELECT type, name, tbl_name, sql FROM sqlite_master"), key=repr)


def test_a_new_store_is_made_at_the_current_schema_and_reads_as_a_migrated_one(tmp_path, monkeypatch, caplog):
    assert schema.CURRENT_VERSION == SCHEMA_VERSION, "a new migration step needs schema.CURRENT too"
    fresh = str(tmp_path / "fresh.db")
    with caplog.at_level("INFO", logger="golemd.store"):
        SqliteStore(fresh).close()
    assert [r.getMessage() for r in caplog.records] == [f"creating a new store {fresh} at schema {SCHEMA_VERSION}"]
    # The same store through every step of the migration path, as an old golemd made it.
    stepped = str(tmp_path / "stepped.db")
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)
    SqliteStore(stepped).close()
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level("INFO", logger="golemd.store"):
        SqliteStore(stepped).close()
    assert len(caplog.records) == SCHEMA_VERSION - 1 and "from schema 1 to 2" in caplog.records[0].getMessage()
    assert _master(fresh) == _master(stepped)
    for sql in ("PRAGMA user_version", "PRAGMA auto_vacuum", "SELECT key, value FROM meta"):
        assert raw(fresh, sql) == raw(stepped, sql), sql


def test_reopening_keeps_the_version(path):
    s = SqliteStore(path)
    s.insert_agent(agent_row())
    s.commit_now()
    s.close()
    s = SqliteStore(path)
    try:
        assert [r["agent_id"] for r in s.load_agents()] == [A]
    finally:
        s.close()
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_newer_schema_is_refused(path):
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteStore(path)


def test_migration_path_upgrades_in_steps_and_rolls_back_a_failed_step(path, monkeypatch):
    s = SqliteStore(path)
    s.insert_agent(agent_row())
    s.commit_now()
    s.close()
    # A later version appends a step; an existing store is upgraded and keeps its data.
    steps = [*schema.MIGRATIONS, ["ALTER TABLE agents ADD COLUMN note TEXT"]]
    monkeypatch.setattr(schema, "MIGRATIONS", steps)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(steps))
    s = SqliteStore(path)
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == len(steps)
    assert [r["agent_id"] for r in s.load_agents()] == [A] and "note" in s.load_agents()[0]
    s.close()
    # A step that fails leaves the store as it was.
    broken = [*steps, ["CREATE TABLE t(x)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(schema, "MIGRATIONS", broken)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(broken))
    with pytest.raises(sqlite3.Error):
        SqliteStore(path)
    assert raw(path, "PRAGMA user_version") == [(len(steps),)]
    assert raw(path, "SELECT name FROM sqlite_master WHERE name = 't'") == []


def test_schema_1_store_is_upgraded_in_steps(path, monkeypatch):
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)
    s = SqliteStore(path)
    s.insert_invocation(inv_row("k0", seq=0))
    s.insert_invocation(inv_row("k1", seq=1, status="completed"))
    s.commit_now()
    s.close()
    monkeypatch.undo()
    s = SqliteStore(path)
    try:
        assert [r["key"] for r in s.load_active()[A]] == ["k0"]
    finally:
        s.close()
    indexes = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    # 1 -> 2 replaced invocations_active with invocations_open; 2 -> 3 dropped that too.
    assert "invocations_key" in indexes
    assert "invocations_open" not in indexes and "invocations_active" not in indexes
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    # The old rows are filed: found by agent, through agent_rows.
    assert raw(path, "SELECT count(*) FROM agent_rows WHERE agent_id = ?", (A,)) == [(2,)]
    assert raw(path, "SELECT value FROM meta WHERE key = 'filed_upto'") == [("2",)]


def test_schema_2_store_loses_the_open_index_and_keeps_its_queues(path, monkeypatch):
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    s = SqliteStore(path)
    for i, status in enumerate(["completed", "pending", "scheduled", "failed", "running", "pending"]):
        s.insert_invocation(inv_row(f"k{i}", seq=10 - i, status=status))
    s.insert_invocation(inv_row("b0", agent_id=B, seq=0))
    s.commit_now()
    s.close()
    assert "invocations_open" in {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    monkeypatch.undo()
    s = SqliteStore(path)
    try:
        active = s.load_active()
        assert [r["key"] for r in active[A]] == ["k5", "k4", "k2", "k1"]  # open ones, in queue (seq) order
        assert [r["key"] for r in active[B]] == ["b0"]
    finally:
        s.close()
    assert "invocations_open" not in {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_schema_3_store_gains_the_effects_journal_and_keeps_its_rows(path, monkeypatch):
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 3)
    s = SqliteStore(path)
    s.insert_invocation(inv_row("k0", status="pending"))
    s.commit_now()
    s.close()
    tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "effects" not in tables and "promises" not in tables
    monkeypatch.undo()
    s = SqliteStore(path)
    try:
        assert [r["key"] for r in s.load_active()[A]] == ["k0"]
        s.put_effect(A, "k0", 0, "step", b"\x80", 1.0, result=b"\x80", finished_at=1.0)
        s.commit_now()
        assert [r["seq"] for r in s.load_effects(A, "k0")] == [0]
    finally:
        s.close()
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_prune_gives_the_space_back(store):
    for t in range(3000):
        store.insert_invocation(inv_row(f"f{t}", seq=t, status="completed", finished_at=float(t),
                                        outcome=b"x" * 200))
    store.commit_now()
    full = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.prune(A, 100, 1e12)
    store.commit_now()
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert store.db.execute("PRAGMA page_count").fetchone()[0] < full / 5


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(sqlite, "FILE_BATCH", 3)


def test_an_agents_rows_are_found_filed_or_not(store, path, small_batches):
    """agent_rows is filed every FILE_BATCH rows; what is not filed yet is
    found by row id. Oplog, prune and delete see both."""
    for t in range(1, 11):  # interleaved with B's, so the batches mix agents
        store.insert_invocation(inv_row(f"f{t}", seq=t, status="completed", finished_at=float(t)))
        store.insert_invocation(inv_row(f"f{t}", agent_id=B, seq=t, status="completed", finished_at=float(t)))
    store.commit_now()
    filed = raw(path, "SELECT count(*) FROM agent_rows WHERE agent_id = ?", (A,))[0][0]
    assert 0 < filed < 10  # some filed, the newest not yet
    assert sum(1 for e in store.oplog(A, None) if e["kind"] == "enqueued") == 10
    store.prune(A, 3, 100.0)
    store.commit_now()
    assert _keys(store) == {"f8", "f9", "f10"} and len(_keys(store, B)) == 10
    assert raw(path, "SELECT count(*) FROM agent_rows WHERE agent_id = ? AND id NOT IN "
               "(SELECT id FROM invocations)", (A,)) == [(0,)]  # no entry outlives its row
    store.delete_agent(B)
    store.commit_now()
    assert _keys(store, B) == set() and raw(path, "SELECT count(*) FROM agent_rows WHERE agent_id = ?", (B,)) == [(0,)]
    assert _keys(store) == {"f8", "f9", "f10"}


def test_a_rolled_back_batch_is_filed_again(path, small_batches):
    async def main() -> None:
        s = SqliteStore(path)
        try:
            s.insert_invocation(inv_row("k0", seq=0))
            s.commit_now()

            def broken() -> None:
                raise GolemError(Code.STORAGE_FULL, "no space")

            for i in range(1, 4):  # the third insert files a batch, in the transaction that fails
                s.insert_invocation(inv_row(f"k{i}", seq=i))
            s.write_before_commit(A, broken)
            with pytest.raises(GolemError):
                await asyncio.wait_for(s.commit(), 5)
            assert raw(path, "SELECT count(*) FROM agent_rows") == [(0,)]
            for i in range(1, 7):
                s.insert_invocation(inv_row(f"k{i}", seq=i))
            await asyncio.wait_for(s.commit(), 5)
            # every row of A is reachable by agent again: none was skipped by the lost batch
            assert sum(1 for e in s.oplog(A, None) if e["kind"] == "enqueued") == 7
            s.delete_agent(A)
            await asyncio.wait_for(s.commit(), 5)
            assert raw(path, "SELECT count(*) FROM invocations") == [(0,)]
        finally:
            s.close()

    asyncio.run(main())


def test_bug_row_ids_reused_below_the_filing_mark_are_still_found_by_agent(store, path, small_batches):
    """SQLite gives a new row the largest row id + 1: once the newest rows are
    deleted, new rows take ids at or below the filing watermark. They were in
    neither agent_rows nor the unfiled tail, so oplog, prune and delete did
    not see them, and a re-created agent kept its old outcomes after a delete."""
    for t in range(3):  # the third files the batch: the watermark is at 3
        store.insert_invocation(inv_row(f"a{t}", seq=t, status="completed", finished_at=float(t)))
    store.delete_agent(A)
    store.commit_now()
    for t in range(2):  # ids 1 and 2 again
        store.insert_invocation(inv_row(f"b{t}", agent_id=B, seq=t, status="completed", finished_at=float(t)))
    store.commit_now()
    assert [e["idempotency_key"] for e in store.oplog(B, None) if e["kind"] == "enqueued"] == ["b0", "b1"]
    assert store.prune(B, 1, 100.0) == 1
    store.delete_agent(B)
    store.commit_now()
    assert store.get_invocation(B, "b1") is None
    assert raw(path, "SELECT count(*) FROM invocations") == [(0,)]
    for t in range(4):  # and filing goes on from the lowered mark
        store.insert_invocation(inv_row(f"c{t}", seq=t))
    store.commit_now()
    assert raw(path, "SELECT count(*) FROM agent_rows WHERE agent_id = ?", (A,)) == [(3,)]
    assert len(store.oplog(A, None)) == 4


def test_bug_a_raising_callback_does_not_keep_the_others_from_hearing_of_a_lost_transaction(path):
    """When SQLite rolls a transaction back itself (a full disk), the callers
    waiting on it are told at once; one callback that raised used to leave
    the rest untold (and replaced the storage error with its own)."""
    s = SqliteStore(path)
    try:
        s.commit_now()
        pages = s.db.execute("PRAGMA page_count").fetchone()[0]
        s.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        told: list[str] = []

        def broken(err: GolemError | None) -> None:
            raise RuntimeError("a callback's bug")

        s.hold()
        s.insert_invocation(inv_row("k0"))
        s.on_commit(broken)
        s.on_commit(lambda err: told.append("none" if err is None else err.code))
        with pytest.raises(GolemError) as info:
            for i in range(1, 1000):
                s.insert_invocation(inv_row(f"k{i}", seq=i, args=b"x" * 4000))
        assert info.value.code == Code.STORAGE_FULL
        assert told == [Code.STORAGE_FULL]
        s.release()  # nobody waits any more: no commit to start (it would need a loop)
    finally:
        s.close()



# -- commit timing and failures, with SQLite's constants -------------------------------

def test_an_idle_commit_waits_at_most_lazy_ns(store):
    loop = FakeLoop()
    store.attach(loop.hooks(idle_hook=True))
    told = Told()
    store.insert_invocation(inv_row("k1"))
    store.on_commit_idle(told("k1"))
    loop.now_ns += SqliteStore.LAZY_NS - 1
    assert store.idle(False) is False
    loop.now_ns += 1
    assert store.idle(False) is True
    loop.run_round()
    assert told.heard == [("k1", None)]


def test_under_load_a_commit_waits_group_delay(store):
    loop = FakeLoop()
    store.attach(loop.hooks(busy=lambda: True))
    store.insert_invocation(inv_row("k1"))
    store.commit_soon()
    assert [t.delay for t in loop.pending_timers()] == [SqliteStore.GROUP_DELAY]


def test_a_commit_that_fails_rolls_back_and_files_the_batch_again(store, path, small_batches, monkeypatch):
    """The COMMIT itself fails (GOLEMD_FAIL_COMMIT, a full disk): rolled back,
    the callers told STORAGE_FULL, and the batch filed in it is filed again."""
    store.attach(FakeLoop().hooks())
    fails = iter([True])
    monkeypatch.setattr(commits, "commit_fails", lambda: next(fails, False))
    told = Told()
    store.hold()
    for i in range(3):  # the third files a batch
        store.insert_invocation(inv_row(f"k{i}", seq=i))
    store.on_commit(told("lost"))
    store.release()
    assert told.heard == [("lost", Code.STORAGE_FULL)]
    assert raw(path, "SELECT count(*) FROM invocations") == [(0,)]
    assert store.get_invocation(A, "k0") is None
    for i in range(3):
        store.insert_invocation(inv_row(f"k{i}", seq=i))
    store.on_commit(told("kept"))
    assert told.heard[-1] == ("kept", None)
    assert raw(path, "SELECT count(*) FROM agent_rows WHERE agent_id = ?", (A,)) == [(3,)]


# -- the wiring --------------------------------------------------------------------------

def test_hooks_for_an_asyncio_loop_read_its_queue_of_ready_callbacks():
    loop = asyncio.new_event_loop()
    try:
        hooks = LoopHooks.for_loop(loop)
        assert hooks.ready is loop._ready
        assert hooks.call_soon == loop.call_soon and hooks.call_later == loop.call_later
        assert hooks.busy is None and hooks.idle_hook is False
        busy = LoopHooks.for_loop(loop, busy=lambda: True, idle_hook=True)
        assert busy.busy is not None and busy.busy() and busy.idle_hook
    finally:
        loop.close()


def test_the_driver_imports_the_protocol_from_here():
    from golemd.storage import base

    assert sqlite.Store is base.Store and sqlite.Store is not SqliteStore
