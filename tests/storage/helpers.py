"""What the store tests share: the backends the contract runs against, a loop
stepped by hand, and row builders."""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgpack

from golemd.storage.base import LoopHooks, Store
from golemd.storage.sqlite import SqliteStore

Fixture = Callable[[str], Any]
"""A fixture's value by name (pytest's request.getfixturevalue): what a backend needs from the session."""

A = 'CounterAgent("a")'
B = 'CounterAgent("b")'


# -- backends ------------------------------------------------------------------

class Backend(Protocol):
    """One Store implementation at one fresh location (a file, a database)."""

    def open(self) -> Store:
        """A store at this location: the same data each time, once the
        previous one is closed. The caller closes it."""
        ...

    def after_crash(self) -> Store:
        """A store that sees what a restart after a crash at this instant
        would: everything committed, nothing else. Closed by close()."""
        ...

    def count_commits(self, store: Store) -> Callable[[], int]:
        """From now on, count the transactions the store commits: the
        function returned gives the count so far."""
        ...

    def close(self) -> None:
        """Close what after_crash() opened."""
        ...


def copy_sqlite(path: str, dest: str) -> None:
    """A database and its WAL as they are on disk now. The store holds an
    exclusive lock, so no second connection can read the original."""
    shutil.copyfile(path, dest)
    if os.path.exists(path + "-wal"):
        shutil.copyfile(path + "-wal", dest + "-wal")


class SqliteBackend:
    def __init__(self, tmp: Path, fixture: Fixture):
        self.tmp = tmp
        self.path = str(tmp / "golemd.db")
        self._copies: list[SqliteStore] = []

    def open(self) -> SqliteStore:
        return SqliteStore(self.path)

    def after_crash(self) -> SqliteStore:
        copy = str(self.tmp / f"crashed-{len(self._copies)}.db")
        copy_sqlite(self.path, copy)
        store = SqliteStore(copy)
        self._copies.append(store)
        return store

    def count_commits(self, store: Store) -> Callable[[], int]:
        assert isinstance(store, SqliteStore)
        commits: list[str] = []
        store.db.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
        return lambda: len(commits)

    def close(self) -> None:
        for store in self._copies:
            store.close()


def store_lost(reason: str) -> None:
    """PostgresStore's on_lost in tests: where the daemon would exit, the test fails."""
    raise AssertionError(f"the store lost its connection: {reason}")


class PostgresBackend:
    """A fresh database of the session's cluster (the pg_cluster fixture);
    after_crash() a second connection, which sees what was committed only."""

    def __init__(self, tmp: Path, fixture: Fixture):
        import psycopg

        self.cluster = fixture("pg_cluster")
        self.url = self.cluster.create_database()
        self.name = self.url.rsplit("/", 1)[1]
        self._readers: list[Store] = []
        self._watch = psycopg.connect(self.url, autocommit=True)

    def open(self) -> Store:
        from golemd.storage.postgres import PostgresStore

        return PostgresStore(self.url, on_lost=store_lost)

    def after_crash(self) -> Store:
        from golemd.storage.postgres import PostgresStore

        store = PostgresStore(self.url, exclusive=False, on_lost=store_lost)
        self._readers.append(store)
        return store

    def count_commits(self, store: Store) -> Callable[[], int]:
        """The transactions PostgreSQL committed since now, from its commit log:
        each that wrote has a transaction id, and pg_xact_status says which
        committed. Those still open now are counted once they commit. The
        test cluster runs no autovacuum, so no other transaction takes an id."""
        xmax, open_now = self._watch.execute(
            "SELECT pg_snapshot_xmax(s)::text::bigint, ARRAY(SELECT pg_snapshot_xip(s)::text::bigint) "
            "FROM pg_current_snapshot() s").fetchone()

        def count() -> int:
            row = self._watch.execute(
                "SELECT count(*) FROM (SELECT generate_series(%s::bigint, "
                "pg_snapshot_xmax(pg_current_snapshot())::text::bigint - 1) AS x UNION SELECT unnest(%s::bigint[])) t "
                "WHERE pg_xact_status(x::text::xid8) = 'committed'", (xmax, open_now)).fetchone()
            return int(row[0])
        return count

    def close(self) -> None:
        for store in self._readers:
            store.close()
        self._watch.close()
        self.cluster.drop_database(self.name)


BACKENDS: dict[str, Callable[[Path, Fixture], Backend]] = {
    "sqlite": SqliteBackend,
    "postgres": PostgresBackend,
}


# -- a loop stepped by hand ----------------------------------------------------

class Timer:
    def __init__(self, when_ns: int, delay: float, fn: Callable[[], None]):
        self.when_ns, self.delay, self.fn = when_ns, delay, fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The store's LoopHooks, stepped by the test: call_soon queues for the
    next round, call_later sets a timer, and the clock moves only in advance()."""

    def __init__(self) -> None:
        self.ready: deque[Callable[[], None]] = deque()
        self.timers: list[Timer] = []
        self.now_ns = 10**12  # far from 0, as perf_counter_ns is

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.ready.append(fn)

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(self.now_ns + int(delay * 1e9), delay, fn)
        self.timers.append(timer)
        return timer

    def clock_ns(self) -> int:
        return self.now_ns

    def hooks(self, busy: Callable[[], bool] | None = None, idle_hook: bool = False) -> LoopHooks:
        return LoopHooks(self.call_soon, self.call_later, self.ready, busy, idle_hook, self.clock_ns)

    def run_round(self) -> int:
        """Run what was ready when the round began, as asyncio does: what
        those schedule runs in the next round. Returns how many ran."""
        n = len(self.ready)
        for _ in range(n):
            self.ready.popleft()()
        return n

    def pending_timers(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, seconds: float) -> None:
        """Move the clock on, firing the timers that come due, in order."""
        self.now_ns += int(seconds * 1e9)
        due = sorted((t for t in self.pending_timers() if t.when_ns <= self.now_ns), key=lambda t: t.when_ns)
        for timer in due:
            self.timers.remove(timer)
            timer.fn()


# -- rows ------------------------------------------------------------------------

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


class Told:
    """Commit callbacks that record what they were told, under a name."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, Any]] = []

    def __call__(self, name: str) -> Callable[[Any], None]:
        def fn(err: Any) -> None:
            self.heard.append((name, None if err is None else err.code))
        return fn

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.heard]
