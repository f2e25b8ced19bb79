"""SQLite store: agents, invocations (queue + stored outcomes), snapshots, events.

One connection, owned by the event loop. Writes go into an open transaction
and are committed together once the loop has run everything that was ready
(group commit): `await store.commit()` returns when this caller's writes are
durable, and concurrent requests share the transaction. With WAL and
synchronous=NORMAL a commit survives a crash of the daemon; FULL also
survives power loss, at the cost of an fsync per group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from golemd.faults import commit_fails
from golemd.model.errors import Code, GolemError
from golemd.perf import cork

log = logging.getLogger("golemd.store")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)""",
    """CREATE TABLE IF NOT EXISTS agents(
        agent_id TEXT PRIMARY KEY, env TEXT NOT NULL, type TEXT NOT NULL, args BLOB NOT NULL,
        created_at REAL NOT NULL, last_active_at REAL NOT NULL,
        completed_count INTEGER NOT NULL DEFAULT 0, failed_count INTEGER NOT NULL DEFAULT 0,
        retry_count INTEGER NOT NULL DEFAULT 0, last_error TEXT, interrupted INTEGER NOT NULL DEFAULT 0,
        failed_error BLOB, snapshot BLOB)""",
    # Rows go in rowid order (appended pages, few dirty pages per commit); the
    # idempotency lookup uses the small unique index.
    """CREATE TABLE IF NOT EXISTS invocations(
        id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
        method TEXT NOT NULL, args BLOB NOT NULL, status TEXT NOT NULL, outcome BLOB,
        created_at REAL NOT NULL, started_at REAL, finished_at REAL, schedule_at REAL, timeout REAL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS invocations_key ON invocations(agent_id, key)""",
    """CREATE INDEX IF NOT EXISTS invocations_active ON invocations(agent_id, seq)
        WHERE status IN ('pending', 'running', 'scheduled')""",
    """CREATE TABLE IF NOT EXISTS events(
        id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
        key TEXT, method TEXT, detail TEXT)""",
    """CREATE INDEX IF NOT EXISTS events_agent ON events(agent_id, id)""",
]

# The migration path: MIGRATIONS[n] takes a store from schema n to n + 1, in
# one transaction with the version bump. A new schema change appends a step;
# a released step is never edited. A store newer than this code is refused.
MIGRATIONS: list[list[str]] = [
    _SCHEMA,  # 0 -> 1: the first schema
    # 1 -> 2: no index led by agent_id is written per invocation. Such an index
    # dirties one page per busy agent in every commit, which cost a third of
    # the pipelined throughput. Instead: unfinished invocations are indexed
    # by row id (recovery reads them in one pass); idempotency keys by
    # (key, agent_id), where generated keys only ever append; and an agent's
    # rows are found through agent_rows, filed in batches (see _file_rows).
    ["DROP INDEX IF EXISTS invocations_active",
     """CREATE INDEX invocations_open ON invocations(id)
        WHERE status IN ('pending', 'running', 'scheduled')""",
     "DROP INDEX IF EXISTS invocations_key",
     "CREATE UNIQUE INDEX invocations_key ON invocations(key, agent_id)",
     "CREATE TABLE agent_rows(agent_id TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (agent_id, id)) "
     "WITHOUT ROWID",
     "INSERT INTO agent_rows(agent_id, id) SELECT agent_id, id FROM invocations",
     "INSERT OR REPLACE INTO meta(key, value) SELECT 'filed_upto', COALESCE(MAX(id), 0) FROM invocations"],
    # 2 -> 3: no index on open invocations either. Its entry went in with each
    # enqueue and out with each outcome, which cost 5-6 us of every call's 13
    # in SQLite; recovery reads them in a scan of the table instead, as it
    # already did for the agents' next sequence numbers.
    ["DROP INDEX IF EXISTS invocations_open"],
]

# An agent's rows: those filed in agent_rows, and the unfiled tail (row ids
# above the watermark, at most FILE_BATCH of them, scanned by row id).
FILE_BATCH = 2000
_MINE = ("SELECT id FROM agent_rows WHERE agent_id = :agent "
         "UNION ALL SELECT id FROM invocations WHERE id > :upto AND agent_id = :agent")
SCHEMA_VERSION = len(MIGRATIONS)

_AGENT_COLS = ("agent_id", "env", "type", "args", "created_at", "last_active_at", "completed_count",
               "failed_count", "retry_count", "last_error", "interrupted", "failed_error",
               "snapshot")
_INV_COLS = ("agent_id", "key", "seq", "method", "args", "status", "outcome", "created_at",
             "started_at", "finished_at", "schedule_at", "timeout")


def _ignore(_err: GolemError | None) -> None:
    pass


def _tell(callbacks: list[Callable[[GolemError | None], None]], error: GolemError | None) -> None:
    """Each callback, in order, even when one raises: every caller must hear."""
    cork.hold()  # the callers told of this commit are answered in one write per connection
    try:
        for fn in callbacks:
            try:
                fn(error)
            except Exception:
                log.exception("a commit callback failed")
    finally:
        cork.release()


def _storage_error(exc: sqlite3.Error) -> GolemError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "disk" in text):
        return GolemError(Code.STORAGE_FULL, f"the journal cannot be written: {text}")
    return GolemError(Code.INTERNAL, f"the journal failed: {text}")


class Store:
    LAZY_NS = 50_000  # an on_commit_idle commit waits at most this long (idle())
    GROUP_DELAY = 0.001  # under load (busy()), a group commit waits this long to take in more

    def __init__(self, path: str, synchronous: str = "NORMAL"):
        self.path = path
        if path != ":memory:":
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if self.db.execute("PRAGMA user_version").fetchone()[0] == 0:
            # Before anything writes the header (WAL does): lets prune() give
            # freed pages back, so the file stays bounded, not only its rows.
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        # Exclusive: one daemon per state directory holds the lock anyway, and
        # without the shared-memory WAL index each commit costs a third less.
        self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Checkpoint every 10,000 WAL pages (40 MiB), not SQLite's 1,000: a hot
        # page (an agent's row, an index's right edge) is copied back once per
        # checkpoint however often it changed, and NORMAL syncs twice per
        # checkpoint. Under pipelined load the checkpoints took a third of the
        # commit time. The WAL file is cut back to 64 MiB after each.
        self.db.execute("PRAGMA wal_autocheckpoint=10000")
        self.db.execute("PRAGMA journal_size_limit=67108864")
        self.db.execute("PRAGMA foreign_keys=OFF")
        self._migrate()
        self._in_txn = False
        self._statements: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._callbacks: list[Callable[[GolemError | None], None]] = []
        self._flush_scheduled = False
        self._holds = 0
        self._urgent = False  # someone waits on a commit (on_commit), not only on_commit_idle
        self._lazy_since = 0  # perf_counter_ns of the oldest on_commit_idle not yet committed
        self.idle_commits = False  # the event loop calls idle() (golemd.perf.spin)
        self.busy: Callable[[], bool] | None = None  # under load: group commits wait GROUP_DELAY
        self._flush_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: Any = None
        self._deferred: dict[str, Callable[[], None]] = {}
        self._filed_upto = self._read_filed_upto()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer golemd (schema {version}; "
                               f"this one knows {SCHEMA_VERSION})")
        for step in range(version, SCHEMA_VERSION):
            log.info("migrating %s from schema %d to %d", self.path, step, step + 1)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in MIGRATIONS[step]:
                    self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version={step + 1}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _read_filed_upto(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'filed_upto'").fetchone()
        return int(row[0]) if row else 0

    # -- writing ---------------------------------------------------------

    def _exec(self, sql: str, params: tuple[Any, ...] | list[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        try:
            if not self._in_txn:
                self.db.execute("BEGIN")
                self._in_txn = True
            return self.db.execute(sql, params)
        except sqlite3.Error as exc:
            err = _storage_error(exc)
            if not self.db.in_transaction:
                # SQLite rolled the whole transaction back (it does on a full
                # disk): everyone waiting on this group commit lost their writes.
                self._in_txn = False
                self._rolled_back()
                self._fail_callbacks(err)
            raise err from exc

    def _rolled_back(self) -> None:
        self._deferred.clear()
        try:
            self._filed_upto = self._read_filed_upto()  # a batch filed in the lost transaction is not
        except sqlite3.Error:
            pass

    def _fail_callbacks(self, err: GolemError) -> None:
        callbacks, self._callbacks = self._callbacks, []
        self._urgent = False  # nobody waits on a commit now
        self._lazy_since = 0
        _tell(callbacks, err)

    def _sql(self, kind: str, table: str, cols: tuple[str, ...]) -> str:
        """The statement for these columns, built once: it is on every invocation's path."""
        sql = self._statements.get((kind, table, cols))
        if sql is None:
            if kind == "insert":
                sql = f"INSERT OR REPLACE INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            else:
                where = "agent_id = ?" if table == "agents" else "agent_id = ? AND key = ?"
                sql = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in cols)} WHERE {where}"
            self._statements[(kind, table, cols)] = sql
        return sql

    def insert_agent(self, row: dict[str, Any]) -> None:
        cols = tuple(c for c in _AGENT_COLS if c in row)
        self._exec(self._sql("insert", "agents", cols), [row[c] for c in cols])

    def update_agent(self, agent_id: str, **cols: Any) -> None:
        self._exec(self._sql("update", "agents", tuple(cols)), [*cols.values(), agent_id])

    def insert_invocation(self, row: dict[str, Any]) -> int:
        """Insert; returns the row's id, for finish_invocation()."""
        cols = tuple(c for c in _INV_COLS if c in row)
        return self._inserted(self._exec(self._sql("insert", "invocations", cols), [row[c] for c in cols]))

    _ENQUEUE_SQL = ("INSERT OR REPLACE INTO invocations(agent_id, key, seq, method, args, status, created_at, "
                    "schedule_at, timeout) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")

    def enqueue_invocation(self, agent_id: str, key: str, seq: int, method: str, args: bytes, status: str,
                           created_at: float, schedule_at: float | None, timeout: float | None) -> int:
        """insert_invocation for a new one, without a dict: on every invocation's path."""
        return self._inserted(self._exec(self._ENQUEUE_SQL, (agent_id, key, seq, method, args, status,
                                                             created_at, schedule_at, timeout)))

    def _inserted(self, cur: sqlite3.Cursor) -> int:
        rowid = cur.lastrowid or 0
        if not 0 < rowid - self._filed_upto < FILE_BATCH:
            if rowid > self._filed_upto:
                self._file_rows(rowid)
            else:
                self._lower_filed_upto(rowid - 1)
        return rowid

    def _file_rows(self, upto: int) -> None:
        """Add the unfiled rows up to `upto` to agent_rows, sorted by agent:
        each agent's entries land together, a few pages per batch, where an
        index on agent_id would have dirtied a page per agent per commit."""
        self._exec("INSERT OR IGNORE INTO agent_rows(agent_id, id) SELECT agent_id, id FROM invocations "
                   "WHERE id > ? AND id <= ? ORDER BY agent_id, id", (self._filed_upto, upto))
        self._set_filed_upto(upto)

    def _lower_filed_upto(self, upto: int) -> None:
        """SQLite gives a new row the largest row id + 1, so once the newest
        rows are deleted (an agent, a prune) new rows take ids at or below
        the watermark, where neither agent_rows nor the tail would find them.
        Every row above `upto` is gone then: the tail starts there again. An
        entry of agent_rows above it can only name a deleted row; dropping
        those scans agent_rows, which happens only after such a delete."""
        self._exec("DELETE FROM agent_rows WHERE id > ?", (upto,))
        self._set_filed_upto(upto)

    def _set_filed_upto(self, upto: int) -> None:
        self._exec("INSERT OR REPLACE INTO meta(key, value) VALUES ('filed_upto', ?)", (upto,))
        self._filed_upto = upto

    def update_invocation(self, agent_id: str, key: str, **cols: Any) -> None:
        self._exec(self._sql("update", "invocations", tuple(cols)), [*cols.values(), agent_id, key])

    _FINISH_SQL = "UPDATE invocations SET status = ?, outcome = ?, finished_at = ?, started_at = ? WHERE id = ?"

    def finish_invocation(self, rowid: int, status: str, outcome: bytes, finished_at: float,
                          started_at: float | None) -> None:
        """An outcome's write, by row id: on every invocation's path."""
        self._exec(self._FINISH_SQL, (status, outcome, finished_at, started_at, rowid))

    def write_before_commit(self, name: str, write: Callable[[], None]) -> None:
        """Call write() just before the next commit, once however often asked:
        a row that changes with every invocation (an agent's counters and
        snapshot) is written once per group commit, in the same transaction."""
        self._deferred[name] = write

    def event(self, agent_id: str, ts: float, kind: str, key: str | None = None,
              method: str | None = None, detail: str | None = None) -> None:
        self._exec("INSERT INTO events(agent_id, ts, kind, key, method, detail) VALUES (?, ?, ?, ?, ?, ?)",
                   (agent_id, ts, kind, key, method, detail))

    def delete_agent(self, agent_id: str) -> None:
        self._exec(f"DELETE FROM invocations WHERE id IN ({_MINE})", {"agent": agent_id, "upto": self._filed_upto})
        for table in ("agent_rows", "events", "agents"):
            self._exec(f"DELETE FROM {table} WHERE agent_id = ?", (agent_id,))

    def prune(self, agent_id: str, keep: int, older_than: float) -> int:
        """Drop finished invocations that are neither among the newest `keep`
        nor finished after `older_than`; and events older than both."""
        # Ranking sorts all the agent's rows; counting its index entries first
        # is far cheaper, and while it holds no more than `keep` rows of any
        # kind there is nothing to drop (W2's 100 agents each ranked 1,000
        # rows for nothing at their 1,000th call).
        held = self.db.execute(f"SELECT count(*) FROM ({_MINE})",
                               {"agent": agent_id, "upto": self._filed_upto}).fetchone()[0]
        if held <= keep:
            return 0
        # Ranked newest first among the agent's rows that carry a finish time.
        rows = self.db.execute(
            f"SELECT id, finished_at, status, rn FROM (SELECT i.id, i.finished_at, i.status, "
            f"row_number() OVER (ORDER BY i.finished_at DESC, i.id DESC) AS rn FROM invocations i "
            f"WHERE i.id IN ({_MINE}) AND i.finished_at IS NOT NULL) WHERE rn >= :first ORDER BY rn",
            {"agent": agent_id, "upto": self._filed_upto, "first": max(keep, 1)}).fetchall()
        if not rows:
            return 0
        newest = rows[0][1]  # the keep-th newest finish: events before it (and old) go too
        doomed = [(rowid,) for rowid, finished_at, status, rn in rows
                  if rn > keep and finished_at <= older_than and status in ("completed", "failed", "canceled")]
        for rowid, in doomed:
            self._exec("DELETE FROM invocations WHERE id = ?", (rowid,))
            self._exec("DELETE FROM agent_rows WHERE agent_id = ? AND id = ?", (agent_id, rowid))
        before = self.db.total_changes
        self._exec("DELETE FROM events WHERE agent_id = ? AND ts < ? AND ts < ?",
                   (agent_id, older_than, newest))
        removed = len(doomed) + self.db.total_changes - before
        if removed:
            try:
                # One page per statement: Python's sqlite3 steps a pragma only once.
                free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
                for _ in range(free):
                    self.db.execute("PRAGMA incremental_vacuum(1)")
            except sqlite3.Error as exc:
                raise _storage_error(exc) from exc
        return removed

    # -- committing ------------------------------------------------------

    def commit(self) -> asyncio.Future[None]:
        """A future resolved once everything written so far is committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(err: GolemError | None) -> None:
            if fut.done():
                return
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)

        self.on_commit(settle)
        return fut

    def commit_soon(self) -> None:
        """Commit what was written, telling no one: a failure is logged by the commit."""
        self.on_commit(_ignore)

    def _flush_soon(self) -> None:
        """Commit at the end of this loop round, so that every request handled in
        it shares the transaction; or now, when nothing else is ready to run in
        this round and so nobody could share it (a lone call saves a round)."""
        if self._flush_scheduled or self._holds:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._ready = getattr(loop, "_ready", None)  # CPython's queue of this round's callbacks
        if self.busy is not None and self.busy():
            # Under load (more workers busy than CPUs) a commit waits a little
            # to take in more: each commit rewrites every page it touched, and
            # each busy agent's row once. Half the commits and agent-row writes
            # in W2; nobody waiting on one call sees the delay.
            self._flush_scheduled = True
            self._flush_timer = loop.call_later(self.GROUP_DELAY, self._flush)
            return
        if self._ready is not None and not self._ready:
            self._flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self._flush)

    def hold(self) -> None:
        """Defer commits until release(): a batch of requests read together
        shares one transaction even when nothing else is ready to run."""
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        if not self._holds and self._urgent:
            self._flush_soon()

    def on_commit(self, fn: Callable[[GolemError | None], None]) -> None:
        """Call fn(None) once everything written so far is committed, or fn(error).

        Called from inside the commit, not a loop round later as a future's
        callbacks would be: the hot path of every invocation goes through here."""
        if not self._in_txn:
            fn(None)
            return
        self._callbacks.append(fn)
        self._urgent = True
        self._flush_soon()

    def on_commit_idle(self, fn: Callable[[GolemError | None], None]) -> None:
        """on_commit, for a commit that may wait a little: until another write
        needs one, the event loop is about to sleep, or LAZY_NS have passed,
        whichever comes first (idle()). A warm call's enqueue then commits with
        its outcome when the reply comes back quickly. Without the loop's idle
        hook, the same as on_commit."""
        if not self.idle_commits:
            self.on_commit(fn)
            return
        if not self._in_txn:
            fn(None)
            return
        if not self._lazy_since:
            self._lazy_since = time.perf_counter_ns()
        self._callbacks.append(fn)

    def idle(self, sleeping: bool) -> bool:
        """Called by the event loop at every turn (golemd.perf.spin): commit, in this
        loop round, what waits when the loop is about to sleep or when it has
        waited LAZY_NS. True when a commit was scheduled, which the loop must
        run before it sleeps."""
        if not self._in_txn or self._flush_scheduled:
            return False
        if not sleeping and time.perf_counter_ns() - self._lazy_since < self.LAZY_NS:
            return False
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._flush_scheduled = False
        self._urgent = False
        self._lazy_since = 0
        error: GolemError | None = None
        if self._deferred:
            deferred, self._deferred = self._deferred, {}
            try:
                for write in deferred.values():
                    write()
            except GolemError as err:
                error = err
        callbacks, self._callbacks = self._callbacks, []
        if self._in_txn:
            try:
                if error is not None:
                    raise sqlite3.OperationalError(str(error))
                if commit_fails():
                    raise sqlite3.OperationalError("database or disk is full (GOLEMD_FAIL_COMMIT)")
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                error = error or _storage_error(exc)
                log.error("commit failed, rolling back: %s", exc)
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._rolled_back()
            self._in_txn = False
        _tell(callbacks, error)

    def commit_now(self) -> None:
        """Commit synchronously (start-up and shutdown, outside the group commit)."""
        self._flush()

    # -- reading ---------------------------------------------------------

    def _rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        cur = self.db.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]  # type: ignore[misc]

    def get_invocation(self, agent_id: str, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM invocations WHERE agent_id = ? AND key = ?", (agent_id, key))
        return rows[0] if rows else None  # type: ignore[return-value]

    def saved_snapshot(self, agent_id: str) -> bytes | None:
        row = self.db.execute("SELECT snapshot FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        return row[0] if row else None

    def load_agents(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM agents")  # type: ignore[return-value]

    def next_seqs(self) -> dict[str, int]:
        """Per agent, the seq its next invocation takes (one scan, at recovery)."""
        rows = self.db.execute("SELECT agent_id, MAX(seq) FROM invocations GROUP BY agent_id")
        return {agent_id: top + 1 for agent_id, top in rows}

    def load_active(self) -> dict[str, list[dict[str, Any]]]:
        """Every agent's unfinished invocations, each agent's in queue order
        (`id` is the row id). One scan of the table, at recovery."""
        out: dict[str, list[dict[str, Any]]] = {}
        for row in self._rows("SELECT * FROM invocations WHERE status IN ('pending', 'running', 'scheduled') "
                              "ORDER BY id"):
            out.setdefault(row["agent_id"], []).append(row)  # type: ignore[arg-type]
        for rows in out.values():
            rows.sort(key=lambda r: r["seq"])
        return out

    def oplog(self, agent_id: str, last: int | None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for e in self._rows("SELECT ts, kind, key, method, detail FROM events WHERE agent_id = ? ORDER BY id",
                            (agent_id,)):
            entries.append(e)  # type: ignore[arg-type]
        for inv in self._rows("SELECT key, method, status, created_at, started_at, finished_at, outcome "
                              f"FROM invocations WHERE id IN ({_MINE})",
                              {"agent": agent_id, "upto": self._filed_upto}):
            base = {"key": inv["key"], "method": inv["method"], "detail": None}  # type: ignore[index]
            entries.append({**base, "ts": inv["created_at"], "kind": "enqueued"})  # type: ignore[index]
            if inv["started_at"] is not None:  # type: ignore[index]
                entries.append({**base, "ts": inv["started_at"], "kind": "started"})  # type: ignore[index]
            if inv["finished_at"] is not None:  # type: ignore[index]
                entries.append({**base, "ts": inv["finished_at"], "kind": inv["status"]})  # type: ignore[index]
        order = {"created": 0, "enqueued": 1, "started": 2}
        entries.sort(key=lambda e: (e["ts"], order.get(e["kind"], 3)))
        out = []
        for i, e in enumerate(entries, 1):
            entry = {"index": i, "ts": e["ts"], "kind": e["kind"]}
            if e.get("key") is not None:
                entry["idempotency_key"] = e["key"]
            if e.get("method") is not None:
                entry["method"] = e["method"]
            if e.get("detail") is not None:
                entry["detail"] = e["detail"]
            out.append(entry)
        if last is None:
            return out
        return out[len(out) - last:] if last else []

    def close(self) -> None:
        if self._in_txn:
            self._flush()
        self.db.close()
