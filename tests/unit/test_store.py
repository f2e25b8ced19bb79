"""golemd.storage.sqlite.SqliteStore against a real SQLite file: schema, rows, group commit,
delete, retention and the oplog."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from golemd.model.errors import Code, GolemError
from golemd.storage.base import LoopHooks
from golemd.storage.schema import SCHEMA_VERSION
from golemd.storage.sqlite import SqliteStore as Store

A = 'CounterAgent("a")'
B = 'CounterAgent("b")'


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "golemd.db")


@pytest.fixture
def store(path) -> Iterator[Store]:
    s = Store(path)
    yield s
    s.close()


def raw(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """What a restart after a crash would read: a copy of the database and its
    WAL as they are on disk now (the store holds an exclusive lock, so no
    second connection can read the original while it is open)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "copy.db")
        shutil.copyfile(path, copy)
        if os.path.exists(path + "-wal"):
            shutil.copyfile(path + "-wal", copy + "-wal")
        db = sqlite3.connect(copy)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


def agent_row(agent_id: str = A, **over: Any) -> dict[str, Any]:
    row = {"agent_id": agent_id, "env": "default", "type": "CounterAgent",
           "args": msgpack.packb(["a"]), "created_at": 100.0, "last_active_at": 100.0}
    row.update(over)
    return row


def inv_row(key: str, agent_id: str = A, seq: int = 0, status: str = "pending", **over: Any) -> dict[str, Any]:
    row = {"agent_id": agent_id, "key": key, "seq": seq, "method": "increment",
           "args": msgpack.packb([]), "status": status, "created_at": 100.0 + seq}
    row.update(over)
    return row


# -- schema ------------------------------------------------------------------

def test_schema_is_created(store, path):
    assert SCHEMA_VERSION == 3
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agents", "invocations", "events"} <= tables
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]


def test_reopening_keeps_data_and_version(path):
    s = Store(path)
    s.insert_agent(agent_row())
    s.commit_now()
    s.close()
    s = Store(path)
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
        Store(path)


# -- rows --------------------------------------------------------------------

def test_agent_rows(store):
    store.insert_agent(agent_row())
    store.update_agent(A, completed_count=3, last_error="TIMEOUT: slow", snapshot=b"\x00state")
    (row,) = store.load_agents()
    assert row["agent_id"] == A
    assert row["env"] == "default" and row["type"] == "CounterAgent"
    assert msgpack.unpackb(row["args"]) == ["a"]
    assert row["completed_count"] == 3
    assert row["failed_count"] == 0 and row["retry_count"] == 0 and row["interrupted"] == 0
    assert row["last_error"] == "TIMEOUT: slow"
    assert row["snapshot"] == b"\x00state"


def test_invocation_rows(store):
    store.insert_agent(agent_row())
    assert store.get_invocation(A, "k1") is None
    store.insert_invocation(inv_row("k1", args=msgpack.packb([1, "x"]), schedule_at=500.0, timeout=2.5))
    got = store.get_invocation(A, "k1")
    assert got is not None
    assert (got["agent_id"], got["key"], got["method"], got["status"]) == (A, "k1", "increment", "pending")
    assert msgpack.unpackb(got["args"]) == [1, "x"]
    assert (got["schedule_at"], got["timeout"]) == (500.0, 2.5)
    assert got["outcome"] is None and got["started_at"] is None and got["finished_at"] is None

    store.update_invocation(A, "k1", status="running", started_at=101.0)
    store.update_invocation(A, "k1", status="completed", finished_at=102.0,
                            outcome=msgpack.packb({"result": 7}))
    got = store.get_invocation(A, "k1")
    assert got["status"] == "completed"
    assert (got["started_at"], got["finished_at"]) == (101.0, 102.0)
    assert msgpack.unpackb(got["outcome"]) == {"result": 7}
    # keys are scoped to one agent
    assert store.get_invocation(B, "k1") is None
    store.insert_invocation(inv_row("k1", agent_id=B))
    assert store.get_invocation(B, "k1")["status"] == "pending"
    assert store.get_invocation(A, "k1")["status"] == "completed"


def test_update_of_one_invocation_leaves_the_others(store):
    for i in range(3):
        store.insert_invocation(inv_row(f"k{i}", seq=i))
    store.update_invocation(A, "k1", status="canceled", finished_at=5.0)
    assert [store.get_invocation(A, f"k{i}")["status"] for i in range(3)] == ["pending", "canceled", "pending"]


def test_load_active_in_queue_order(store):
    statuses = ["completed", "pending", "running", "scheduled", "failed", "canceled", "pending"]
    for seq, status in reversed(list(enumerate(statuses))):
        store.insert_invocation(inv_row(f"k{seq}", seq=seq, status=status))
    store.insert_invocation(inv_row("other", agent_id=B, seq=0))
    store.insert_invocation(inv_row("done", agent_id="C()", seq=0, status="completed"))
    active = store.load_active()
    assert [(r["key"], r["status"]) for r in active[A]] == [
        ("k1", "pending"), ("k2", "running"), ("k3", "scheduled"), ("k6", "pending")]
    assert [r["key"] for r in active[B]] == ["other"]
    assert "C()" not in active  # nothing open there


# -- group commit ------------------------------------------------------------------

def test_group_commit(path):
    async def main() -> None:
        s = Store(path)
        try:
            s.insert_agent(agent_row())
            s.insert_invocation(inv_row("k1"))
            s.event(A, 100.0, "created")
            # written but not committed: a crash now would lose it
            assert raw(path, "SELECT count(*) FROM agents") == [(0,)]
            assert raw(path, "SELECT count(*) FROM invocations") == [(0,)]
            assert raw(path, "SELECT count(*) FROM events") == [(0,)]
            await asyncio.wait_for(s.commit(), 5)
            # committed: all of it survives
            assert raw(path, "SELECT agent_id FROM agents") == [(A,)]
            assert raw(path, "SELECT status FROM invocations WHERE key = 'k1'") == [("pending",)]
            assert raw(path, "SELECT kind FROM events") == [("created",)]
        finally:
            s.close()

    asyncio.run(main())


def test_concurrent_writers_share_one_commit(path):
    async def main() -> None:
        s = Store(path)
        commits: list[str] = []
        s.db.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)

        async def writer(i: int) -> None:
            s.insert_invocation(inv_row(f"k{i}", seq=i))
            await s.commit()
            # when this caller's commit resolves, its write is durable
            assert raw(path, "SELECT status FROM invocations WHERE key = ?", (f"k{i}",)) == [("pending",)]

        try:
            await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(10))), 5)
            assert len(commits) == 1
            assert raw(path, "SELECT count(*) FROM invocations") == [(10,)]
            # a second round gets a second commit
            s.insert_agent(agent_row())
            await asyncio.wait_for(asyncio.gather(s.commit(), s.commit()), 5)
            assert len(commits) == 2
        finally:
            s.close()

    asyncio.run(main())


def test_held_writes_share_one_commit_at_release(path):
    """A batch of requests read together: a lone writer would commit at once
    (nothing else is ready), but hold() keeps the commit for release()."""
    async def main() -> None:
        s = Store(path)
        commits: list[str] = []
        s.db.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
        told: list[str] = []
        try:
            s.hold()
            for i in range(5):
                s.insert_invocation(inv_row(f"k{i}", seq=i))
                s.on_commit(lambda err, i=i: told.append(f"k{i}" if err is None else repr(err)))
            assert commits == [] and told == []
            assert raw(path, "SELECT count(*) FROM invocations") == [(0,)]
            s.release()
            assert commits == ["COMMIT"]
            assert told == [f"k{i}" for i in range(5)]  # in the order they asked
            assert raw(path, "SELECT count(*) FROM invocations") == [(5,)]
        finally:
            s.close()

    asyncio.run(main())


def test_an_idle_commit_waits_for_the_next_commit_or_for_the_loop_to_idle(path):
    """A warm call's enqueue (on_commit_idle) shares its outcome's commit when
    the reply comes first; else the loop's idle hook commits it alone."""
    async def main() -> None:
        s = Store(path)
        s.attach(LoopHooks.for_loop(asyncio.get_running_loop(), idle_hook=True))
        commits: list[str] = []
        s.db.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
        told: list[str] = []
        try:
            assert s.idle(True) is False  # nothing written: nothing to do
            s.hold()
            s.insert_invocation(inv_row("k1", seq=1))
            s.on_commit_idle(lambda err: told.append("enqueued" if err is None else repr(err)))
            s.release()
            await asyncio.sleep(0)
            assert commits == [] and told == []  # nobody needs it yet
            s.update_invocation(A, "k1", status="completed")
            s.on_commit(lambda err: told.append("finished" if err is None else repr(err)))
            assert commits == ["COMMIT"]  # one commit for both
            assert told == ["enqueued", "finished"]
            s.insert_invocation(inv_row("k2", seq=2))
            s.on_commit_idle(lambda err: told.append("alone" if err is None else repr(err)))
            assert s.idle(False) is False  # the loop is busy, and it has not waited long
            time.sleep(s.LAZY_NS / 1e9)
            assert s.idle(False) is True  # it has waited long enough, busy loop or not
            assert s.idle(True) is False  # already scheduled
            await asyncio.sleep(0)
            assert commits == ["COMMIT", "COMMIT"] and told[-1] == "alone"
            s.insert_invocation(inv_row("k3", seq=3))
            s.on_commit_idle(lambda err: told.append("asleep" if err is None else repr(err)))
            assert s.idle(True) is True  # the loop would sleep: at once
            await asyncio.sleep(0)
            assert told[-1] == "asleep"
            assert raw(path, "SELECT key, status FROM invocations ORDER BY seq") == [
                ("k1", "completed"), ("k2", "pending"), ("k3", "pending")]
        finally:
            s.close()

    asyncio.run(main())


def test_under_load_a_group_commit_waits_a_little_to_take_in_more(path):
    async def main() -> None:
        s = Store(path)
        load = {"busy": True}
        s.attach(LoopHooks.for_loop(asyncio.get_running_loop(), busy=lambda: load["busy"]))
        commits: list[str] = []
        s.db.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
        told: list[str] = []
        try:
            s.insert_invocation(inv_row("k1", seq=1))
            s.on_commit(lambda err: told.append("k1"))
            await asyncio.sleep(0)  # a loop round: not yet, the load may bring more
            s.insert_invocation(inv_row("k2", seq=2))
            s.on_commit(lambda err: told.append("k2"))
            assert commits == [] and told == []
            await asyncio.sleep(s.GROUP_DELAY * 5)
            assert commits == ["COMMIT"] and told == ["k1", "k2"]  # one commit for both
            load["busy"] = False
            s.insert_invocation(inv_row("k3", seq=3))
            s.on_commit(lambda err: told.append("k3"))
            assert commits == ["COMMIT", "COMMIT"] and told[-1] == "k3"  # no load: at once
            s.insert_invocation(inv_row("k4", seq=4))
            load["busy"] = True
            s.on_commit(lambda err: told.append("k4"))
            s.commit_now()  # a commit before the delay is up: the timer is dropped with it
            assert told[-1] == "k4"
            await asyncio.sleep(s.GROUP_DELAY * 5)
            assert len(commits) == 3
        finally:
            s.close()

    asyncio.run(main())


def test_an_idle_commit_without_an_idle_hook_is_an_ordinary_one(path):
    async def main() -> None:
        s = Store(path)
        told: list[str] = []
        try:
            s.insert_invocation(inv_row("k1", seq=1))
            s.on_commit_idle(lambda err: told.append("enqueued" if err is None else repr(err)))
            assert told == ["enqueued"]  # nothing else was ready: committed at once
        finally:
            s.close()

    asyncio.run(main())


def test_write_before_commit_runs_once_per_commit_in_the_same_transaction(path):
    async def main() -> None:
        s = Store(path)
        s.insert_agent(agent_row())
        s.commit_now()
        writes: list[int] = []
        try:
            for n in (1, 2, 3):
                s.insert_invocation(inv_row(f"k{n}", seq=n))

                def write(n: int = n) -> None:
                    writes.append(n)
                    s.update_agent(A, completed_count=n)

                s.write_before_commit(A, write)  # asked three times: written once, the last
            await asyncio.wait_for(s.commit(), 5)
            assert writes == [3]
            assert raw(path, "SELECT completed_count FROM agents") == [(3,)]
            # A failing write fails the whole group: nothing of it is committed.
            s.insert_invocation(inv_row("k9", seq=9))

            def broken() -> None:
                raise GolemError(Code.STORAGE_FULL, "no space")

            s.write_before_commit(A, broken)
            with pytest.raises(GolemError) as info:
                await asyncio.wait_for(s.commit(), 5)
            assert info.value.code == Code.STORAGE_FULL.value
            assert raw(path, "SELECT count(*) FROM invocations WHERE key = 'k9'") == [(0,)]
        finally:
            s.close()

    asyncio.run(main())


def test_outcomes_are_written_by_row_id(store):
    rowid = store.enqueue_invocation(A, "k1", 0, "increment", msgpack.packb([]), "pending", 1.0, None, None)
    other = store.insert_invocation(inv_row("k2", seq=1))
    assert rowid and other and rowid != other
    store.finish_invocation(rowid, "completed", msgpack.packb({"result": 1}), 5.0, 2.0)
    row = store.get_invocation(A, "k1")
    assert (row["status"], row["finished_at"], row["started_at"]) == ("completed", 5.0, 2.0)
    assert msgpack.unpackb(row["outcome"]) == {"result": 1}
    assert store.get_invocation(A, "k2")["status"] == "pending"


def test_commit_with_nothing_written_resolves_at_once(path):
    async def main() -> None:
        s = Store(path)
        try:
            fut = s.commit()
            assert fut.done() and fut.result() is None
            s.insert_agent(agent_row())
            await s.commit()
            again = s.commit()
            assert again.done()
        finally:
            s.close()

    asyncio.run(main())


def test_commit_now_and_close_commit_pending_writes(path):
    s = Store(path)
    s.insert_agent(agent_row())
    assert raw(path, "SELECT count(*) FROM agents") == [(0,)]
    s.commit_now()
    assert raw(path, "SELECT count(*) FROM agents") == [(1,)]
    s.insert_agent(agent_row(B))
    s.close()
    assert raw(path, "SELECT count(*) FROM agents") == [(2,)]


# -- delete and prune -----------------------------------------------------------------

def _fill(store: Store, agent_id: str) -> None:
    store.insert_agent(agent_row(agent_id))
    store.insert_invocation(inv_row("k1", agent_id=agent_id))
    store.insert_invocation(inv_row("k2", agent_id=agent_id, seq=1, status="completed", finished_at=120.0))
    store.event(agent_id, 100.0, "created")
    store.event(agent_id, 110.0, "suspended")


def _counts(path: str, agent_id: str) -> tuple[int, int, int]:
    return tuple(raw(path, f"SELECT count(*) FROM {t} WHERE agent_id = ?", (agent_id,))[0][0]  # type: ignore[return-value]
                 for t in ("agents", "invocations", "events"))


def test_delete_agent(store, path):
    _fill(store, A)
    _fill(store, B)
    store.commit_now()
    assert _counts(path, A) == (1, 2, 2)
    store.delete_agent(A)
    store.commit_now()
    assert _counts(path, A) == (0, 0, 0)
    assert _counts(path, B) == (1, 2, 2)
    assert [r["agent_id"] for r in store.load_agents()] == [B]
    assert store.get_invocation(A, "k1") is None
    assert store.oplog(A, None) == []
    # deleting an unknown agent is harmless
    store.delete_agent("Nobody()")
    store.commit_now()
    assert _counts(path, B) == (1, 2, 2)


def _prune_fixture(store: Store) -> None:
    """Ten finished invocations f1..f10 finished at t=1..10, plus active ones."""
    finished = ["completed", "failed", "canceled"]
    for t in range(1, 11):
        store.insert_invocation(inv_row(f"f{t}", seq=t, status=finished[t % 3], finished_at=float(t)))
    store.insert_invocation(inv_row("pending", seq=11, status="pending"))
    store.insert_invocation(inv_row("running", seq=12, status="running", started_at=0.5))
    store.insert_invocation(inv_row("scheduled", seq=13, status="scheduled", schedule_at=10_000.0))
    # another agent's outcomes are never touched
    for t in range(1, 11):
        store.insert_invocation(inv_row(f"f{t}", agent_id=B, seq=t, status="completed", finished_at=float(t)))


def _keys(store: Store, agent_id: str = A) -> set[str]:
    return {r[0] for r in store.db.execute("SELECT key FROM invocations WHERE agent_id = ?", (agent_id,))}


ACTIVE_KEYS = {"pending", "running", "scheduled"}


@pytest.mark.parametrize(("keep", "older_than", "kept"), [
    (3, 100.0, {8, 9, 10}),           # old ones beyond the newest 3 go
    (3, 5.5, {6, 7, 8, 9, 10}),       # newer than the cutoff stay even beyond 3
    (3, 0.0, set(range(1, 11))),      # everything is newer than the cutoff
    (0, 100.0, set()),                # keep none of the old ones
    (0, 7.0, {8, 9, 10}),             # the cutoff itself is not newer
    (10, 100.0, set(range(1, 11))),   # exactly `keep` finished ones
    (50, 100.0, set(range(1, 11))),
])
def test_prune(store, path, keep, older_than, kept):
    _prune_fixture(store)
    store.commit_now()
    store.prune(A, keep, older_than)
    store.commit_now()
    assert _keys(store) == {f"f{t}" for t in kept} | ACTIVE_KEYS
    assert _keys(store, B) == {f"f{t}" for t in range(1, 11)}
    # durable, not only in this connection
    assert {r[0] for r in raw(path, "SELECT key FROM invocations WHERE agent_id = ?", (A,))} == _keys(store)


def test_prune_returns_a_count(store):
    _prune_fixture(store)
    assert store.prune(A, 50, 100.0) == 0
    assert store.prune(A, 3, 100.0) >= 7
    assert store.prune(A, 3, 100.0) == 0


def test_prune_never_deletes_active_invocations(store):
    # even active ones carrying an old finished_at (e.g. retried after a finish was recorded)
    for i, status in enumerate(["pending", "running", "scheduled"]):
        store.insert_invocation(inv_row(status, seq=i, status=status, finished_at=0.1))
    for t in range(1, 4):
        store.insert_invocation(inv_row(f"f{t}", seq=10 + t, status="completed", finished_at=float(t)))
    store.prune(A, 0, 1000.0)
    assert _keys(store) == ACTIVE_KEYS


def test_prune_drops_old_events_only(store):
    _prune_fixture(store)
    store.event(A, 1.0, "created")
    store.event(A, 9.5, "suspended")
    store.prune(A, 3, 100.0)
    kinds = [e["kind"] for e in store.oplog(A, None) if "idempotency_key" not in e]
    assert kinds == ["suspended"]


def test_prune_keeps_newest_n_with_ties(store):
    for i, t in enumerate([1.0, 2.0, 2.0, 3.0]):
        store.insert_invocation(inv_row(f"f{i}", seq=i, status="completed", finished_at=t))
    store.prune(A, 2, 100.0)
    assert len(_keys(store)) >= 2


# -- oplog ----------------------------------------------------------------------------

def _oplog_fixture(store: Store) -> None:
    store.insert_agent(agent_row())
    store.event(A, 10.0, "created")
    # k1: enqueued at 10 (same ts as "created"), started 11, completed 12
    store.insert_invocation(inv_row("k1", seq=0, status="completed", created_at=10.0,
                                    started_at=11.0, finished_at=12.0))
    store.event(A, 12.5, "suspended", detail="idle")
    store.event(A, 12.8, "resumed_from_snapshot")
    # k2: enqueued at 11.5 (before k1 finished), started 13, failed 14
    store.insert_invocation(inv_row("k2", seq=1, status="failed", created_at=11.5, started_at=13.0,
                                    finished_at=14.0))
    # k3: still pending
    store.insert_invocation(inv_row("k3", seq=2, status="pending", created_at=15.0))
    store.event(A, 16.0, "interrupted", key="k3", method="increment", detail="by the user")
    store.event(B, 11.0, "created")  # another agent


EXPECTED_OPLOG = [
    (10.0, "created", None),
    (10.0, "enqueued", "k1"),
    (11.0, "started", "k1"),
    (11.5, "enqueued", "k2"),
    (12.0, "completed", "k1"),
    (12.5, "suspended", None),
    (12.8, "resumed_from_snapshot", None),
    (13.0, "started", "k2"),
    (14.0, "failed", "k2"),
    (15.0, "enqueued", "k3"),
    (16.0, "interrupted", "k3"),
]


def test_oplog_merges_in_time_order(store):
    _oplog_fixture(store)
    entries = store.oplog(A, None)
    assert [(e["ts"], e["kind"], e.get("idempotency_key")) for e in entries] == EXPECTED_OPLOG
    assert [e["index"] for e in entries] == list(range(1, len(EXPECTED_OPLOG) + 1))
    started = entries[2]
    assert started == {"index": 3, "ts": 11.0, "kind": "started", "idempotency_key": "k1",
                       "method": "increment"}
    assert entries[0] == {"index": 1, "ts": 10.0, "kind": "created"}
    assert entries[5] == {"index": 6, "ts": 12.5, "kind": "suspended", "detail": "idle"}
    assert entries[-1] == {"index": 11, "ts": 16.0, "kind": "interrupted", "idempotency_key": "k3",
                           "method": "increment", "detail": "by the user"}
    assert [e["kind"] for e in store.oplog(B, None)] == ["created"]
    assert store.oplog("Nobody()", None) == []


def test_oplog_same_timestamp_keeps_lifecycle_order(store):
    # a fast call on a coarse clock: everything at one instant
    store.event(A, 5.0, "created")
    store.insert_invocation(inv_row("z", seq=0, status="completed", created_at=5.0, started_at=5.0,
                                    finished_at=5.0))
    store.insert_invocation(inv_row("a", seq=1, status="canceled", created_at=5.0, finished_at=5.0))
    entries = store.oplog(A, None)
    kinds = [(e["kind"], e.get("idempotency_key")) for e in entries]
    assert kinds[0] == ("created", None)
    for key, lifecycle in (("z", ["enqueued", "started", "completed"]), ("a", ["enqueued", "canceled"])):
        assert [k for k, ik in kinds if ik == key] == lifecycle
    assert [e["index"] for e in entries] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("last", [1, 3, 11, 100])
def test_oplog_last(store, last):
    _oplog_fixture(store)
    full = store.oplog(A, None)
    tail = store.oplog(A, last)
    assert tail == full[-last:]
    # the newest N keep their indexes in the whole log
    assert tail[-1]["index"] == len(full)
    assert [e["index"] for e in tail] == list(range(len(full) - len(tail) + 1, len(full) + 1))


def test_oplog_last_zero(store):
    _oplog_fixture(store)
    assert store.oplog(A, 0) == []


def test_migration_path_upgrades_in_steps_and_rolls_back_a_failed_step(path, monkeypatch):
    from golemd.storage import schema as store_mod

    s = Store(path)
    s.insert_agent(agent_row())
    s.commit_now()
    s.close()
    # A later version appends a step; an existing store is upgraded and keeps its data.
    steps = [*store_mod.MIGRATIONS, ["ALTER TABLE agents ADD COLUMN note TEXT"]]
    monkeypatch.setattr(store_mod, "MIGRATIONS", steps)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(steps))
    s = Store(path)
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == len(steps)
    assert [r["agent_id"] for r in s.load_agents()] == [A] and "note" in s.load_agents()[0]
    s.close()
    # A step that fails leaves the store as it was.
    broken = [*steps, ["CREATE TABLE t(x)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(store_mod, "MIGRATIONS", broken)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(broken))
    with pytest.raises(sqlite3.Error):
        Store(path)
    assert raw(path, "PRAGMA user_version") == [(len(steps),)]
    assert raw(path, "SELECT name FROM sqlite_master WHERE name = 't'") == []


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


def test_schema_1_store_is_upgraded_in_steps(path, monkeypatch):
    from golemd.storage import schema as store_mod

    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:1])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 1)
    s = Store(path)
    s.insert_invocation(inv_row("k0", seq=0))
    s.insert_invocation(inv_row("k1", seq=1, status="completed"))
    s.commit_now()
    s.close()
    monkeypatch.undo()
    s = Store(path)
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
    from golemd.storage import schema as store_mod

    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:2])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 2)
    s = Store(path)
    for i, status in enumerate(["completed", "pending", "scheduled", "failed", "running", "pending"]):
        s.insert_invocation(inv_row(f"k{i}", seq=10 - i, status=status))
    s.insert_invocation(inv_row("b0", agent_id=B, seq=0))
    s.commit_now()
    s.close()
    assert "invocations_open" in {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    monkeypatch.undo()
    s = Store(path)
    try:
        active = s.load_active()
        assert [r["key"] for r in active[A]] == ["k5", "k4", "k2", "k1"]  # open ones, in queue (seq) order
        assert [r["key"] for r in active[B]] == ["b0"]
    finally:
        s.close()
    assert "invocations_open" not in {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert raw(path, "PRAGMA user_version") == [(3,)]


@pytest.fixture
def small_batches(monkeypatch):
    from golemd.storage import sqlite

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
        s = Store(path)
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
    s = Store(path)
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
        s.release()
    finally:
        s.close()
