"""The SQLite store's schema, its migration path, and how an agent's rows are found.

The file format is this schema at SCHEMA_VERSION (PRAGMA user_version)."""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger("golemd.store")

# The statements of the migration steps below, named so that a new store can
# be made from the same text (SQLite keeps each CREATE's text in sqlite_master,
# and a fresh store must read the same as an upgraded one).
_META = """CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)"""
_AGENTS = """CREATE TABLE IF NOT EXISTS agents(
        agent_id TEXT PRIMARY KEY, env TEXT NOT NULL, type TEXT NOT NULL, args BLOB NOT NULL,
        created_at REAL NOT NULL, last_active_at REAL NOT NULL,
        completed_count INTEGER NOT NULL DEFAULT 0, failed_count INTEGER NOT NULL DEFAULT 0,
        retry_count INTEGER NOT NULL DEFAULT 0, last_error TEXT, interrupted INTEGER NOT NULL DEFAULT 0,
        failed_error BLOB, snapshot BLOB)"""
# Rows go in rowid order (appended pages, few dirty pages per commit); the
# idempotency lookup uses the small unique index.
_INVOCATIONS = """CREATE TABLE IF NOT EXISTS invocations(
        id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
        method TEXT NOT NULL, args BLOB NOT NULL, status TEXT NOT NULL, outcome BLOB,
        created_at REAL NOT NULL, started_at REAL, finished_at REAL, schedule_at REAL, timeout REAL)"""
_EVENTS = """CREATE TABLE IF NOT EXISTS events(
        id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
        key TEXT, method TEXT, detail TEXT)"""
_EVENTS_AGENT = """CREATE INDEX IF NOT EXISTS events_agent ON events(agent_id, id)"""
_INVOCATIONS_KEY = "CREATE UNIQUE INDEX invocations_key ON invocations(key, agent_id)"
_AGENT_ROWS = ("CREATE TABLE agent_rows(agent_id TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (agent_id, id)) "
               "WITHOUT ROWID")
_FILED_UPTO = ("INSERT OR REPLACE INTO meta(key, value) SELECT 'filed_upto', COALESCE(MAX(id), 0) "
               "FROM invocations")
_EFFECTS = """CREATE TABLE effects(
        agent_id TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
        request BLOB NOT NULL, result BLOB, started_at REAL NOT NULL, until REAL, finished_at REAL,
        PRIMARY KEY (agent_id, key, seq)) WITHOUT ROWID"""
_PROMISES = """CREATE TABLE promises(
        id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
        created_at REAL NOT NULL, completed_at REAL, value BLOB)"""
_PROMISES_AGENT = "CREATE INDEX promises_agent ON promises(agent_id)"
_AGENTS_ENV_VARS = "ALTER TABLE agents ADD COLUMN env_vars BLOB"
_INVOCATIONS_SNAPSHOT = "ALTER TABLE invocations ADD COLUMN snapshot BLOB"
_INVOCATIONS_SNAPSHOT_KEPT = "ALTER TABLE invocations ADD COLUMN snapshot_kept INTEGER"
_AGENTS_FIN_UPTO = "ALTER TABLE agents ADD COLUMN fin_upto INTEGER NOT NULL DEFAULT 0"
_INVOCATIONS_FIN = "ALTER TABLE invocations ADD COLUMN fin INTEGER"

# The migration path: MIGRATIONS[n] takes a store from schema n to n + 1, in
# one transaction with the version bump. A new schema change appends a step
# (and changes CURRENT below); a released step is never edited. A store newer
# than this code is refused.
MIGRATIONS: list[list[str]] = [
    # 0 -> 1: the first schema
    [_META, _AGENTS, _INVOCATIONS,
     """CREATE UNIQUE INDEX IF NOT EXISTS invocations_key ON invocations(agent_id, key)""",
     """CREATE INDEX IF NOT EXISTS invocations_active ON invocations(agent_id, seq)
        WHERE status IN ('pending', 'running', 'scheduled')""",
     _EVENTS, _EVENTS_AGENT],
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
     _INVOCATIONS_KEY,
     _AGENT_ROWS,
     "INSERT INTO agent_rows(agent_id, id) SELECT agent_id, id FROM invocations",
     _FILED_UPTO],
    # 2 -> 3: no index on open invocations either. Its entry went in with each
    # enqueue and out with each outcome, which cost 5-6 us of every call's 13
    # in SQLite; recovery reads them in a scan of the table instead, as it
    # already did for the agents' next sequence numbers.
    ["DROP INDEX IF EXISTS invocations_open"],
    # 3 -> 4: durable execution. An invocation's effects, by its agent, key
    # and effect number (the key is unique per agent, so a row id reused
    # after a prune can never inherit another invocation's journal); and the
    # promises invocations create. Both keyed so that an agent's rows are one
    # range of the primary key, or of one small index, for delete and list.
    [_EFFECTS, _PROMISES, _PROMISES_AGENT],
    # 4 -> 5: an agent's own environment variables (agent new --env), msgpack
    # of {name: value}; NULL for none.
    [_AGENTS_ENV_VARS],
    # 5 -> 6: the state a completed invocation left, when it changed it (agent
    # revert goes back to the one before the invocations it forgets), kept as
    # long as retention keeps the invocation's row; snapshot_kept is 1 when the
    # snapshot column tells (NULL there: the state did not change), NULL or 0
    # when it does not (rows from before, states over revert_snapshot_bytes).
    [_INVOCATIONS_SNAPSHOT, _INVOCATIONS_SNAPSHOT_KEPT],
    # 6 -> 7: an agent's row is no longer rewritten with every outcome. A
    # completed invocation whose row holds all it changed carries the
    # agent's finish number `fin`; the agent's row is written later, with
    # fin_upto the newest number it takes in, and is read rolled forward
    # over the rows numbered above it (golemd.storage.rollforward).
    [_AGENTS_FIN_UPTO, _INVOCATIONS_FIN],
]

def _with_columns(create: str, *alters: str) -> str:
    """A CREATE TABLE with the columns of these ALTER TABLE ... ADD COLUMN
    statements, written as SQLite writes them into sqlite_master: appended
    before the closing parenthesis, after ', '."""
    for alter in alters:
        create = create.removesuffix(")") + ", " + alter.split(" ADD COLUMN ", 1)[1] + ")"
    return create


# A new store is made at once in the newest schema, in one step: what the
# migration path leaves, without building indexes that later steps drop.
# tests/storage/test_sqlite.py checks that the two read the same in
# sqlite_master, and that CURRENT is for the newest version.
CURRENT_VERSION = 7
CURRENT: list[str] = [
    _META, _with_columns(_AGENTS, _AGENTS_ENV_VARS, _AGENTS_FIN_UPTO),
    _with_columns(_INVOCATIONS, _INVOCATIONS_SNAPSHOT, _INVOCATIONS_SNAPSHOT_KEPT, _INVOCATIONS_FIN),
    _EVENTS, _EVENTS_AGENT, _INVOCATIONS_KEY, _AGENT_ROWS, _FILED_UPTO, _EFFECTS, _PROMISES,
    _PROMISES_AGENT]

SCHEMA_VERSION = len(MIGRATIONS)

AGENT_COLS = ("agent_id", "env", "type", "args", "created_at", "last_active_at", "completed_count",
              "failed_count", "retry_count", "last_error", "interrupted", "failed_error",
              "snapshot", "env_vars", "fin_upto")
INV_COLS = ("agent_id", "key", "seq", "method", "args", "status", "outcome", "created_at",
            "started_at", "finished_at", "schedule_at", "timeout", "snapshot", "snapshot_kept", "fin")

# An agent's rows: those filed in agent_rows, and the unfiled tail (row ids
# above the watermark `filed_upto`, at most FILE_BATCH of them, scanned by
# row id; see SqliteStore._file_rows).
AGENT_ROW_IDS = ("SELECT id FROM agent_rows WHERE agent_id = :agent "
                 "UNION ALL SELECT id FROM invocations WHERE id > :upto AND agent_id = :agent")


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the database up to SCHEMA_VERSION, one step per transaction;
    refuse one written by a newer golemd."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} was written by a newer golemd (schema {version}; "
                           f"this one knows {SCHEMA_VERSION})")
    if version == 0 and SCHEMA_VERSION == CURRENT_VERSION and _empty(db):
        log.info("creating a new store %s at schema %d", path, SCHEMA_VERSION)
        _run(db, CURRENT, SCHEMA_VERSION)
        return
    for step in range(version, SCHEMA_VERSION):
        log.info("migrating %s from schema %d to %d", path, step, step + 1)
        _run(db, MIGRATIONS[step], step + 1)


def _empty(db: sqlite3.Connection) -> bool:
    """Nothing in it yet (a store of schema 0 with tables is upgraded in steps)."""
    return db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None


def _run(db: sqlite3.Connection, statements: list[str], version: int) -> None:
    """The statements and the version bump, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for stmt in statements:
            db.execute(stmt)
        db.execute(f"PRAGMA user_version={version}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
