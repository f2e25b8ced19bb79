"""PostgreSQL store: what SqliteStore keeps, in a PostgreSQL database
(`golemd --store postgresql://...`, DESIGN.md §7), for one daemon.

The same model as SQLite's (golemd.storage.base): one open transaction,
committed in groups by golemd.storage.commits, on one connection owned by
the event loop (golemd.storage.pgconn: writes queued and sent together, so a
group commit is one round trip). Durability is PostgreSQL's: with its
default synchronous_commit=on a commit survives a crash of the server and
of the machine. The schema and its migrations: golemd.storage.pgschema.

Row ids come from the invocations' sequence in blocks of ID_BLOCK, so that
an enqueue knows its row id without a round trip: sequence values are never
handed out twice, committed or not.

Every write goes through _exec (or _changed, when its count is needed):
the one place where a cluster's fencing token can be added to the
statements themselves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg

from golemd.model.errors import Code, GolemError
from golemd.storage import oplog
from golemd.storage.base import OplogEntry, Store
from golemd.storage.columns import ColumnWrites
from golemd.storage.commits import GroupCommit
from golemd.storage.durable import DurableRows
from golemd.storage.pgconn import FENCED, Link, Lost, fenced, storage_error
from golemd.storage.pgschema import migrate
from golemd.storage.rollforward import RollForward
from golemd.storage.rows import by_agent, history_rows, prune_choice
from golemd.storage.schema import AGENT_COLS, INV_COLS

log = logging.getLogger("golemd.store")

ID_BLOCK = 1000
EXIT_STORE_LOST = 75  # EX_TEMPFAIL: systemd's Restart=on-failure starts golemd again


def exit_daemon(reason: str) -> None:
    """The store cannot go on truthfully (the connection went away with a
    transaction on it): end the daemon as a crash would. Every caller told
    of a commit was told the truth; the others see their connection drop,
    and a restart recovers from what PostgreSQL committed."""
    log.critical("%s: exiting; a restart recovers from what PostgreSQL committed", reason)
    logging.shutdown()
    os._exit(EXIT_STORE_LOST)


_TRANSLATED: dict[str, str] = {}


def _pg(sql: str) -> str:
    """SQL written for both dialects (`?`) in psycopg's placeholders."""
    out = _TRANSLATED.get(sql)
    if out is None:
        out = _TRANSLATED[sql] = sql.replace("?", "%s")
    return out


def _upsert(table: str, cols: tuple[str, ...]) -> str:
    """INSERT of these columns replacing the row of the same key whole, as
    SQLite's INSERT OR REPLACE does: EXCLUDED holds the defaults of the
    columns not given, and an invocation takes the new row id."""
    conflict: tuple[str, ...]
    every: tuple[str, ...]
    if table == "agents":
        conflict, every = ("agent_id",), AGENT_COLS
    else:
        conflict, every = ("agent_id", "key"), ("id", *INV_COLS)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in every if c not in conflict)
    return (f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
            f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {sets}")


_ENQUEUE_SQL = _upsert("invocations", ("id", "agent_id", "key", "seq", "method", "args", "status", "created_at",
                                       "schedule_at", "timeout"))
_FINISH_SQL = ("UPDATE invocations SET status = %s, outcome = %s, finished_at = %s, started_at = %s, snapshot = %s, "
               "snapshot_kept = %s, fin = %s WHERE id = %s")
_ACTIVE = "status IN ('pending', 'running', 'scheduled')"


class PostgresStore(ColumnWrites, RollForward, DurableRows, GroupCommit):
    """The Store (golemd.storage.base) in a PostgreSQL database.

    `exclusive`: hold the database's daemon lock (a second daemon on it is
    refused); False for a reader beside the daemon (tests, tools).
    `connect_wait`: seconds to wait at start for a server that is not up.
    `on_lost(reason)`: called when the connection went away and the store
    cannot tell what was committed; by default the daemon exits (exit_daemon)."""

    def __init__(self, url: str, *, exclusive: bool = True, connect_wait: float = 30.0,
                 on_lost: Callable[[str], None] = exit_daemon) -> None:
        super().__init__()
        self.link = Link(url, exclusive=exclusive, wait=connect_wait)
        self.where = self.link.where
        try:
            migrate(self.link.conn, self.where)
        except BaseException:
            self.link.close()
            raise
        self.on_lost = on_lost
        self._ids: list[int] = []
        # A cluster node's (name, epoch): every commit checks that it still holds its leases.
        self.fence: tuple[str, int] | None = None
        self._statements: dict[tuple[str, str, tuple[str, ...]], str] = {}

    # -- the statements: every write, every read ----------------------------

    def _begin(self) -> None:
        if not self._in_txn:
            self.link.begin()
            self._in_txn = True

    def _exec(self, sql: str, params: Any = (), many: bool = False) -> None:
        """A write (`many`: once per row of `params`), queued in the open transaction."""
        self._begin()
        self.link.queue(_pg(sql), params, many)

    def _changed(self, sql: str, params: Any = ()) -> int:
        self._begin()
        return self._fetch(sql, params).rowcount

    def _fetch(self, sql: str, params: Any = ()) -> psycopg.Cursor[dict[str, Any]]:
        try:
            cur = self.link.round_trip(_pg(sql), params)
        except Lost as exc:
            self.on_lost(str(exc))
            raise self._failed(GolemError(Code.INTERNAL, f"the journal failed: {exc}")) from exc
        except psycopg.Error as exc:
            raise self._failed(storage_error(exc)) from exc
        assert cur is not None
        return cur

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return self._fetch(sql, params).fetchall()

    def _failed(self, err: GolemError) -> GolemError:
        """A statement failed, and PostgreSQL aborts the transaction it was
        in: everyone waiting on this group commit lost their writes."""
        self.link.rollback()
        if self._in_txn:
            self._in_txn = False
            self._rolled_back()
            self._fail_callbacks(err)
        return err

    def _next_id(self) -> int:
        """A new invocation's row id; in the open transaction, whose write needs it."""
        self._begin()
        if not self._ids:
            rows = self._rows("SELECT nextval('invocations_id_seq') AS id FROM generate_series(1, %s)", (ID_BLOCK,))
            self._ids = [r["id"] for r in reversed(rows)]
        return self._ids.pop()

    def _insert_sql(self, table: str, cols: tuple[str, ...]) -> str:
        return _upsert(table, cols)

    # -- writing -------------------------------------------------------------

    def insert_invocation(self, row: Mapping[str, Any]) -> int:
        cols = tuple(c for c in INV_COLS if c in row)
        rowid = self._next_id()
        self._exec(self._sql("insert", "invocations", ("id", *cols)), [rowid, *(row[c] for c in cols)])
        return rowid

    def enqueue_invocation(self, agent_id: str, key: str, seq: int, method: str, args: bytes, status: str,
                           created_at: float, schedule_at: float | None, timeout: float | None) -> int:
        rowid = self._next_id()
        self._exec(_ENQUEUE_SQL, (rowid, agent_id, key, seq, method, args, status, created_at, schedule_at, timeout))
        return rowid

    def finish_invocation(self, rowid: int, status: str, outcome: bytes, finished_at: float,
                          started_at: float | None, snapshot: bytes | None = None, snapshot_kept: bool = True,
                          fin: int | None = None) -> None:
        self._exec(_FINISH_SQL, (status, outcome, finished_at, started_at, snapshot, 1 if snapshot_kept else 0, fin,
                                 rowid))

    def history(self, agent_id: str) -> list[dict[str, Any]]:
        return history_rows(self._rows(
            "SELECT id, agent_id, key, seq, method, status, created_at, started_at, finished_at, schedule_at, "
            "timeout, snapshot, snapshot_kept FROM invocations WHERE agent_id = %s AND finished_at IS NOT NULL "
            "AND status IN ('completed', 'failed', 'canceled') ORDER BY finished_at, id", (agent_id,)))

    def forget_invocations(self, agent_id: str, keys: list[str]) -> None:
        found = self._rows("SELECT id, key FROM invocations WHERE agent_id = %s AND key = ANY(%s)", (agent_id, keys))
        self._drop_rows(agent_id, [(r["id"], r["key"]) for r in found])

    def _drop_rows(self, agent_id: str, rows: list[tuple[int, str]]) -> None:
        """Delete these (row id, key) invocations of the agent, with their effects and promises."""
        if rows:
            self._exec("DELETE FROM invocations WHERE id = ANY(%s)", ([rowid for rowid, _key in rows],))
            self._delete_durable(agent_id, [key for _rowid, key in rows])

    def event(self, agent_id: str, ts: float, kind: str, key: str | None = None,
              method: str | None = None, detail: str | None = None) -> None:
        self._exec("INSERT INTO events(agent_id, ts, kind, key, method, detail) VALUES (%s, %s, %s, %s, %s, %s)",
                   (agent_id, ts, kind, key, method, detail))

    def delete_agent(self, agent_id: str) -> None:
        for table in ("invocations", "events", "agents"):
            self._exec(f"DELETE FROM {table} WHERE agent_id = %s", (agent_id,))
        self._delete_durable(agent_id)

    def prune(self, agent_id: str, keep: int, older_than: float) -> int:
        held = self._rows("SELECT count(*) AS n FROM invocations WHERE agent_id = %s", (agent_id,))[0]["n"]
        if held <= keep:
            return 0
        ranked = [(r["id"], r["finished_at"], r["status"], r["rn"], r["key"]) for r in self._rows(
            "SELECT id, finished_at, status, rn, key FROM (SELECT id, finished_at, status, key, "
            "row_number() OVER (ORDER BY finished_at DESC, id DESC) AS rn FROM invocations "
            "WHERE agent_id = %s AND finished_at IS NOT NULL) ranked WHERE rn >= %s ORDER BY rn",
            (agent_id, max(keep, 1)))]
        if not ranked:
            return 0
        newest, doomed = prune_choice(ranked, keep, older_than)
        self._drop_rows(agent_id, doomed)
        return len(doomed) + self._changed("DELETE FROM events WHERE agent_id = %s AND ts < %s AND ts < %s",
                                           (agent_id, older_than, newest))

    # -- committing (the scheduling is GroupCommit's) --------------------------

    def _end_transaction(self, error: GolemError | None) -> GolemError | None:
        if error is None:
            try:
                if self.fence is not None:
                    # in the same transaction, sent with its COMMIT (golemd.cluster.db)
                    self.link.queue("SELECT golemd_fence(%s, %s)", self.fence, False)
                self.link.commit()
            except Lost as exc:
                self.on_lost(str(exc))
                error = GolemError(Code.INTERNAL, f"the journal failed: {exc}")
            except psycopg.Error as exc:
                error = fenced(exc) if exc.sqlstate == FENCED else storage_error(exc)
        if error is not None:
            log.error("commit failed, rolling back: %s", error)
            self.link.rollback()
            self._rolled_back()
        self._in_txn = False
        return error

    # -- reading ---------------------------------------------------------------

    def get_invocation(self, agent_id: str, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM invocations WHERE agent_id = %s AND key = %s", (agent_id, key))
        return rows[0] if rows else None

    def next_seqs(self) -> dict[str, int]:
        return {r["agent_id"]: r["top"] + 1
                for r in self._rows("SELECT agent_id, max(seq) AS top FROM invocations GROUP BY agent_id")}

    def complete_promise(self, promise_id: str, value: bytes, completed_at: float) -> bool:
        done = super().complete_promise(promise_id, value, completed_at)
        if done and self.fence is not None:
            # a cluster: the nodes where someone waits on it hear of it when this commits
            self._exec("SELECT pg_notify('golemd_promise', ?)", (promise_id,))
        return done

    def load_active(self) -> dict[str, list[dict[str, Any]]]:
        return by_agent(self._rows(f"SELECT * FROM invocations WHERE {_ACTIVE} ORDER BY id"))

    def oplog(self, agent_id: str, last: int | None) -> list[OplogEntry]:
        return oplog.build(
            self._rows(f"SELECT {oplog.EVENT_COLS} FROM events WHERE agent_id = %s ORDER BY id", (agent_id,)),
            self._rows(f"SELECT {', '.join(oplog.INVOCATION_COLS)} FROM invocations WHERE agent_id = %s",
                       (agent_id,)),
            self.agent_effects(agent_id), last)

    def close(self) -> None:
        if self._in_txn or self._later:
            self.commit_now()
        self.link.close()


if TYPE_CHECKING:
    _conforms: type[Store] = PostgresStore  # mypy checks that PostgresStore keeps the protocol
