"""SQLite store: agents, invocations (queue + stored outcomes), snapshots, events.

One connection, owned by the event loop; its writes are committed in groups
(golemd.storage.commits). With WAL and synchronous=NORMAL a commit survives a
crash of the daemon; FULL also survives power loss, at the cost of an fsync
per group. The schema and its migrations: golemd.storage.schema.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from golemd.model.errors import Code, GolemError
from golemd.storage import oplog
from golemd.storage.base import OplogEntry
from golemd.storage.base import Store as Store  # the protocol, importable from here too
from golemd.storage.columns import ColumnWrites
from golemd.storage.commits import GroupCommit
from golemd.storage.durable import DurableRows
from golemd.storage.rollforward import RollForward
from golemd.storage.rows import by_agent, history_rows, prune_choice
from golemd.storage.schema import AGENT_ROW_IDS, INV_COLS, migrate

log = logging.getLogger("golemd.store")

# agent_rows is filed every FILE_BATCH new rows (see SqliteStore._file_rows).
FILE_BATCH = 2000


def _storage_error(exc: sqlite3.Error) -> GolemError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "disk" in text):
        return GolemError(Code.STORAGE_FULL, f"the journal cannot be written: {text}")
    return GolemError(Code.INTERNAL, f"the journal failed: {text}")


class SqliteStore(ColumnWrites, RollForward, DurableRows, GroupCommit):
    """The embedded store (golemd.storage.base.Store), in one SQLite file."""

    def __init__(self, path: str, synchronous: str = "NORMAL"):
        super().__init__()
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
        migrate(self.db, path)
        self._statements: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._filed_upto = self._read_filed_upto()

    def _read_filed_upto(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'filed_upto'").fetchone()
        return int(row[0]) if row else 0

    # -- writing ---------------------------------------------------------

    def _exec(self, sql: str, params: Any = (), many: bool = False) -> sqlite3.Cursor:
        """Run a write in the open transaction (`many`: once per row of `params`)."""
        try:
            if not self._in_txn:
                self.db.execute("BEGIN")
                self._in_txn = True
            return self.db.executemany(sql, params) if many else self.db.execute(sql, params)
        except sqlite3.Error as exc:
            err = _storage_error(exc)
            if not self.db.in_transaction:
                # SQLite rolled the whole transaction back (it does on a full
                # disk): everyone waiting on this group commit lost their writes.
                self._in_txn = False
                self._rolled_back()
                self._fail_callbacks(err)
            raise err from exc

    def _changed(self, sql: str, params: Any = ()) -> int:
        return self._exec(sql, params).rowcount

    def _rolled_back(self) -> None:
        self._deferred.clear()
        try:
            self._filed_upto = self._read_filed_upto()  # a batch filed in the lost transaction is not
        except sqlite3.Error:
            pass

    def _insert_sql(self, table: str, cols: tuple[str, ...]) -> str:
        return f"INSERT OR REPLACE INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def insert_invocation(self, row: Mapping[str, Any]) -> int:
        """Insert; returns the row's id, for finish_invocation()."""
        cols = tuple(c for c in INV_COLS if c in row)
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

    _FINISH_SQL = ("UPDATE invocations SET status = ?, outcome = ?, finished_at = ?, started_at = ?, snapshot = ?, "
                   "snapshot_kept = ?, fin = ? WHERE id = ?")

    def finish_invocation(self, rowid: int, status: str, outcome: bytes, finished_at: float,
                          started_at: float | None, snapshot: bytes | None = None, snapshot_kept: bool = True,
                          fin: int | None = None) -> None:
        """An outcome's write, by row id: on every invocation's path."""
        self._exec(self._FINISH_SQL, (status, outcome, finished_at, started_at, snapshot, 1 if snapshot_kept else 0,
                                      fin, rowid))

    def history(self, agent_id: str) -> list[dict[str, Any]]:
        return history_rows(self._rows(
            "SELECT id, agent_id, key, seq, method, status, created_at, started_at, finished_at, schedule_at, "
            f"timeout, snapshot, snapshot_kept FROM invocations WHERE id IN ({AGENT_ROW_IDS}) AND finished_at IS NOT NULL "
            "AND status IN ('completed', 'failed', 'canceled') ORDER BY finished_at, id",
            {"agent": agent_id, "upto": self._filed_upto}))

    def forget_invocations(self, agent_id: str, keys: list[str]) -> None:
        found = [(row[0], key) for key in keys
                 for row in self.db.execute("SELECT id FROM invocations WHERE agent_id = ? AND key = ?",
                                            (agent_id, key))]
        self._drop_rows(agent_id, found)

    def _drop_rows(self, agent_id: str, rows: list[tuple[int, str]]) -> None:
        """Delete these (row id, key) invocations of the agent, with their effects and promises."""
        if not rows:
            return
        self._exec("DELETE FROM invocations WHERE id = ?", [(rowid,) for rowid, _key in rows], many=True)
        self._exec("DELETE FROM agent_rows WHERE agent_id = ? AND id = ?",
                   [(agent_id, rowid) for rowid, _key in rows], many=True)
        self._delete_durable(agent_id, [key for _rowid, key in rows])

    def event(self, agent_id: str, ts: float, kind: str, key: str | None = None,
              method: str | None = None, detail: str | None = None) -> None:
        self._exec("INSERT INTO events(agent_id, ts, kind, key, method, detail) VALUES (?, ?, ?, ?, ?, ?)",
                   (agent_id, ts, kind, key, method, detail))

    def delete_agent(self, agent_id: str) -> None:
        self._exec(f"DELETE FROM invocations WHERE id IN ({AGENT_ROW_IDS})", {"agent": agent_id, "upto": self._filed_upto})
        for table in ("agent_rows", "events", "agents"):
            self._exec(f"DELETE FROM {table} WHERE agent_id = ?", (agent_id,))
        self._delete_durable(agent_id)

    def prune(self, agent_id: str, keep: int, older_than: float) -> int:
        """Drop finished invocations that are neither among the newest `keep`
        nor finished after `older_than`; and events older than both."""
        # Ranking sorts all the agent's rows; counting its index entries first
        # is far cheaper, and while it holds no more than `keep` rows of any
        # kind there is nothing to drop (W2's 100 agents each ranked 1,000
        # rows for nothing at their 1,000th call).
        held = self.db.execute(f"SELECT count(*) FROM ({AGENT_ROW_IDS})",
                               {"agent": agent_id, "upto": self._filed_upto}).fetchone()[0]
        if held <= keep:
            return 0
        # Ranked newest first among the agent's rows that carry a finish time.
        ranked = self.db.execute(
            f"SELECT id, finished_at, status, rn, key FROM (SELECT i.id, i.finished_at, i.status, i.key, "
            f"row_number() OVER (ORDER BY i.finished_at DESC, i.id DESC) AS rn FROM invocations i "
            f"WHERE i.id IN ({AGENT_ROW_IDS}) AND i.finished_at IS NOT NULL) WHERE rn >= :first ORDER BY rn",
            {"agent": agent_id, "upto": self._filed_upto, "first": max(keep, 1)}).fetchall()
        if not ranked:
            return 0
        newest, doomed = prune_choice(ranked, keep, older_than)
        self._drop_rows(agent_id, doomed)
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

    # -- committing (the scheduling is GroupCommit's) ------------------------

    def _end_transaction(self, error: GolemError | None) -> GolemError | None:
        try:
            if error is not None:
                raise sqlite3.OperationalError(str(error))
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
        return error

    # -- reading ---------------------------------------------------------

    def _rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        cur = self.db.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def get_invocation(self, agent_id: str, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM invocations WHERE agent_id = ? AND key = ?", (agent_id, key))
        return rows[0] if rows else None

    def next_seqs(self) -> dict[str, int]:
        """Per agent, the seq its next invocation takes (one scan, at recovery)."""
        rows = self.db.execute("SELECT agent_id, MAX(seq) FROM invocations GROUP BY agent_id")
        return {agent_id: top + 1 for agent_id, top in rows}

    def load_active(self) -> dict[str, list[dict[str, Any]]]:
        """Every agent's unfinished invocations, each agent's in queue order
        (`id` is the row id). One scan of the table, at recovery."""
        return by_agent(self._rows("SELECT * FROM invocations WHERE status IN ('pending', 'running', "
                                   "'scheduled') ORDER BY id"))

    def oplog(self, agent_id: str, last: int | None) -> list[OplogEntry]:
        return oplog.build(
            self._rows(f"SELECT {oplog.EVENT_COLS} FROM events WHERE agent_id = ? ORDER BY id", (agent_id,)),
            self._rows(f"SELECT {', '.join(oplog.INVOCATION_COLS)} FROM invocations WHERE id IN ({AGENT_ROW_IDS})",
                       {"agent": agent_id, "upto": self._filed_upto}),
            self.agent_effects(agent_id), last)

    def close(self) -> None:
        if self._in_txn or self._later:
            self.commit_now()
        self.db.close()


if TYPE_CHECKING:
    _conforms: type[Store] = SqliteStore  # mypy checks that SqliteStore keeps the protocol
