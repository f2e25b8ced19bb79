"""The PostgreSQL store's one connection (psycopg 3, synchronous, used from
the event loop's thread), and what its failures mean.

Statements are queued, not sent: the next round trip sends them all in one
pipeline, ahead of the statement whose answer is needed (a read, a count,
the COMMIT). A group commit whose writes nobody read back costs one round
trip. Reads see the queued writes: they go in the same pipeline, first.

The connection is in autocommit mode and the store says BEGIN and COMMIT
itself, so that a read outside a transaction opens none.

When the connection goes away, what was lost decides. Nothing of an open
transaction had reached the server (a restart of PostgreSQL while the
daemon was idle, seen before anything is sent on the dead connection): it
connects again and sends it all there, and nobody notices. Statements of
the open transaction had reached it, or the round trip that failed carried
the COMMIT (which the server may have carried out before it went): Lost, and
the store cannot go on truthfully (PostgresStore's on_lost).
"""

from __future__ import annotations

import logging
import re
import select
import time
from typing import Any

import psycopg
from psycopg import pq
from psycopg.abc import Buffer
from psycopg.adapt import Dumper
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.string import StrDumperUnknown, TextBinaryLoader, TextLoader

from golemd.model.errors import Code, GolemError
from golemd.storage.base import StoreUnavailable

log = logging.getLogger("golemd.store")

CONNECT_TIMEOUT = 5  # seconds, libpq's connect_timeout unless the URL sets one

# An exclusive store holds this session lock: one daemon per database until
# the cluster's leases replace it.
_DAEMON_LOCK = 0x676F6C656D00  # "golem\0"


class Lost(Exception):
    """The connection went away with work of the open transaction on it, or
    while it carried a COMMIT; or it could not be made again."""


# PostgreSQL's text cannot hold NUL, which an idempotency key, an error
# message or an event's detail may. Each str is escaped on its way in and
# back on its way out, U+FFFF (a noncharacter) as the escape: U+FFFF ->
# U+FFFF U+FFFF, NUL -> U+FFFF "0". Injective, so equality and bytewise
# order of anything without either character are as they were.
_ESC = "\uffff"
_UNESCAPE = re.compile("\uffff(.)", re.S)


def _escape(s: str) -> str:
    return s.replace(_ESC, _ESC + _ESC).replace("\x00", _ESC + "0")


def _unescape(s: str) -> str:
    return _UNESCAPE.sub(lambda m: "\x00" if m.group(1) == "0" else _ESC, s)


class _StrDumper(StrDumperUnknown):
    def dump(self, obj: str) -> Buffer | None:
        if "\x00" in obj or _ESC in obj:
            obj = _escape(obj)
        return super().dump(obj)


class _TextLoader(TextLoader):
    def load(self, data: Buffer) -> bytes | str:
        s = super().load(data)
        return _unescape(s) if isinstance(s, str) and _ESC in s else s


class _TextBinaryLoader(TextBinaryLoader):
    def load(self, data: Buffer) -> bytes | str:
        s = super().load(data)
        return _unescape(s) if isinstance(s, str) and _ESC in s else s


class _BoolAsInt(Dumper):
    """A bool as SQLite keeps it, 1 or 0: the store's flags are integer columns."""

    oid = psycopg.adapters.types["int4"].oid

    def dump(self, obj: bool) -> Buffer | None:
        return b"1" if obj else b"0"


def storage_error(exc: psycopg.Error) -> GolemError:
    """The GolemError of a failed statement, with SQLite's codes: a full disk is STORAGE_FULL."""
    if isinstance(exc, psycopg.errors.DiskFull):
        return GolemError(Code.STORAGE_FULL, f"the journal cannot be written: {exc}")
    return GolemError(Code.INTERNAL, f"the journal failed: {exc}")


FENCED = "GD001"  # golemd_fence's SQLSTATE (golemd.cluster.db)


def fenced(exc: psycopg.Error) -> GolemError:
    return GolemError(Code.NOT_OWNER, f"this node's leases are gone (another node declared it dead); "
                      f"nothing of this commit was written: {exc.diag.message_primary}")


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "<an unreadable PostgreSQL URL>"
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
    return f"PostgreSQL {where}"


def _retriable(exc: psycopg.OperationalError) -> bool:
    """A server not up yet (refused, starting, shutting down), as opposed to
    one that says no (no such database, role or password)."""
    state = getattr(exc, "sqlstate", None)
    if state is not None:
        return bool(state.startswith("57P") or state.startswith("08"))
    text = str(exc).lower()
    return not any(w in text for w in ("does not exist", "authentication", "password", "permission denied",
                                       "no pg_hba.conf entry", "invalid"))


class Link:
    """One connection to the store's database, its queue of statements, and
    whether the open transaction has gone to the server yet."""

    def __init__(self, url: str, *, exclusive: bool, wait: float) -> None:
        self.url = url
        self.where = redacted(url)
        self.exclusive = exclusive
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"the store's URL cannot be read: {exc}") from None
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        params.setdefault("application_name", "golemd")
        self._conninfo = make_conninfo("", **params)
        self._queue: list[tuple[str, Any, bool]] = []
        self.in_txn = False  # BEGIN is queued or sent
        self._sent = False  # a round trip of the open transaction reached the server
        self.conn = self._connect(wait)

    # -- connecting ----------------------------------------------------------

    def _connect(self, wait: float) -> psycopg.Connection[dict[str, Any]]:
        """Connect, trying again for `wait` seconds while the server is not up."""
        deadline = time.monotonic() + wait
        delay = 0.1
        while True:
            try:
                conn = psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)
                break
            except psycopg.OperationalError as exc:
                if not _retriable(exc) or time.monotonic() + delay > deadline:
                    raise StoreUnavailable(f"cannot connect to {self.where}: {str(exc).strip()}") from exc
                if delay == 0.1:
                    log.warning("waiting for %s (up to %gs): %s", self.where, wait, str(exc).strip())
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        conn.adapters.register_dumper(str, _StrDumper)
        conn.adapters.register_dumper(bool, _BoolAsInt)
        conn.adapters.register_loader("text", _TextLoader)
        conn.adapters.register_loader("text", _TextBinaryLoader)
        if self.exclusive:
            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS mine", (_DAEMON_LOCK,)).fetchone()
            if not row or not row["mine"]:
                conn.close()
                raise StoreUnavailable(f"another golemd uses {self.where}: one daemon per database")
        return conn

    def _reconnect(self) -> None:
        """A new connection for one that went away (one attempt: the loop waits on it)."""
        self._drop()
        try:
            self.conn = self._connect(0)
        except StoreUnavailable as exc:
            raise Lost(str(exc)) from exc
        log.warning("connected to %s again", self.where)

    def _drop(self) -> None:
        try:
            self.conn.close()
        except psycopg.Error:
            pass

    def _broken(self) -> bool:
        return self.conn.closed or self.conn.broken

    def _gone(self) -> bool:
        """The server closed the connection while it was idle (a restart, a
        terminated backend): a FATAL and the end of the stream wait in the socket."""
        if self._broken():
            return True
        pgconn = self.conn.pgconn
        try:
            # libpq takes the FATAL of an idle connection for a notice, and
            # sees the end of the stream only at its next read: read on
            # while there is something to read.
            for _ in range(8):
                if not select.select([pgconn.socket], [], [], 0)[0]:
                    break
                pgconn.consume_input()
        except (OSError, psycopg.Error):
            return True
        return pgconn.status != pq.ConnStatus.OK

    # -- statements ----------------------------------------------------------

    def begin(self) -> None:
        self._queue.append(("BEGIN", None, False))
        self.in_txn = True
        self._sent = False

    def queue(self, sql: str, params: Any, many: bool = False) -> None:
        self._queue.append((sql, params, many))

    def round_trip(self, sql: str | None = None, params: Any = None) -> psycopg.Cursor[dict[str, Any]] | None:
        """Send what is queued, then `sql`, in one round trip; `sql`'s cursor.
        Raises Lost as the module says, psycopg.Error when a statement failed."""
        if self._gone():
            if self._sent:
                raise Lost(f"the connection to {self.where} was cut with a transaction open")
            self._reconnect()
        try:
            cur = self._send(sql, params)
        except psycopg.OperationalError as exc:
            if not self._broken():
                raise
            if self._sent or sql == "COMMIT":
                what = "a COMMIT whose outcome is unknown" if sql == "COMMIT" else "a transaction open"
                raise Lost(f"the connection to {self.where} was lost with {what}: {str(exc).strip()}") from exc
            self._reconnect()
            try:
                cur = self._send(sql, params)
            except psycopg.OperationalError as again:
                if self._broken():
                    raise Lost(f"the connection to {self.where} was lost: {str(again).strip()}") from again
                raise
        self._queue.clear()
        self._sent = self.in_txn
        return cur

    def _send(self, sql: str | None, params: Any) -> psycopg.Cursor[dict[str, Any]] | None:
        conn = self.conn
        if not self._queue:
            return None if sql is None else conn.execute(sql, params)
        with conn.pipeline():
            writes = conn.cursor()
            for q, p, many in self._queue:
                if many:
                    writes.executemany(q, p)
                else:
                    writes.execute(q, p)
            return None if sql is None else conn.execute(sql, params)

    def commit(self) -> None:
        """COMMIT what is queued and sent. Lost: the outcome cannot be known."""
        self.round_trip("COMMIT")
        self.in_txn = self._sent = False

    def rollback(self) -> None:
        """Forget the open transaction: what is queued, and what the server has of it."""
        self._queue.clear()
        self.in_txn = self._sent = False
        if self._broken():
            return  # the server rolled it back when the connection went
        if self.conn.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
            try:
                self.conn.execute("ROLLBACK")
            except psycopg.Error as exc:
                log.warning("ROLLBACK failed (%s): the connection is dropped", exc)
                self._drop()

    def close(self) -> None:
        self._queue.clear()
        self._drop()
