"""The PostgreSQL store's schema and its migration path.

The tables hold what SQLite's do (golemd.storage.schema), in PostgreSQL's
types: bytea for bytes, double precision for times, bigint for counts and
sequence numbers, BIGSERIAL row ids. Text that is matched or sorted (agent
IDs, keys, promise IDs) is COLLATE "C": bytewise, as SQLite compares, and
whatever the database's locale. SQLite's agent_rows filing is not here: it
spares SQLite's pages, where PostgreSQL's index on (agent_id, key) serves.

The version is the one row of golemd_schema."""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger("golemd.store")

_C = 'text COLLATE "C" NOT NULL'
_AGENTS = f"""CREATE TABLE agents(
        agent_id {_C} PRIMARY KEY, env text NOT NULL, type text NOT NULL, args bytea NOT NULL,
        created_at double precision NOT NULL, last_active_at double precision NOT NULL,
        completed_count bigint NOT NULL DEFAULT 0, failed_count bigint NOT NULL DEFAULT 0,
        retry_count bigint NOT NULL DEFAULT 0, last_error text, interrupted integer NOT NULL DEFAULT 0,
        failed_error bytea, snapshot bytea, env_vars bytea)
        WITH (fillfactor = 50)"""
# An agent's row is rewritten once per group commit while it is busy: room
# on its page lets PostgreSQL update it in place (HOT) rather than touch the
# primary key's index each time. An invocation's row is written twice (its
# enqueue, its outcome) and the outcome is larger: some room for that too.
_INVOCATIONS = f"""CREATE TABLE invocations(
        id bigserial PRIMARY KEY, agent_id {_C}, key {_C}, seq bigint NOT NULL,
        method text NOT NULL, args bytea NOT NULL, status text NOT NULL, outcome bytea,
        created_at double precision NOT NULL, started_at double precision, finished_at double precision,
        schedule_at double precision, timeout double precision, snapshot bytea, snapshot_kept integer,
        CONSTRAINT invocations_key UNIQUE (agent_id, key))
        WITH (fillfactor = 80)"""
_EVENTS = f"""CREATE TABLE events(
        id bigserial PRIMARY KEY, agent_id {_C}, ts double precision NOT NULL, kind text NOT NULL,
        key text COLLATE "C", method text, detail text)"""
_EVENTS_AGENT = "CREATE INDEX events_agent ON events(agent_id, id)"
_EFFECTS = f"""CREATE TABLE effects(
        agent_id {_C}, key {_C}, seq bigint NOT NULL, kind text NOT NULL,
        request bytea NOT NULL, result bytea, started_at double precision NOT NULL, until double precision,
        finished_at double precision, PRIMARY KEY (agent_id, key, seq))"""
_PROMISES = f"""CREATE TABLE promises(
        id {_C} PRIMARY KEY, agent_id {_C}, key {_C}, seq bigint NOT NULL,
        created_at double precision NOT NULL, completed_at double precision, value bytea)"""
_PROMISES_AGENT = "CREATE INDEX promises_agent ON promises(agent_id)"

# MIGRATIONS[n] takes a store from schema n to n + 1; a released step is
# never edited, a change appends one. PostgreSQL's DDL is transactional:
# a start-up's steps and the version bump commit together, or none does.
# CURRENT makes a new store at the newest version in one step
# (tests/storage/test_postgres.py checks that it reads as the path does).
_AGENTS_FIN_UPTO = "ALTER TABLE agents ADD COLUMN fin_upto bigint NOT NULL DEFAULT 0"
_INVOCATIONS_FIN = "ALTER TABLE invocations ADD COLUMN fin bigint"
MIGRATIONS: list[list[str]] = [
    # 0 -> 1: the first schema, SQLite's schema 6.
    [_AGENTS, _INVOCATIONS, _EVENTS, _EVENTS_AGENT, _EFFECTS, _PROMISES, _PROMISES_AGENT],
    # 1 -> 2: SQLite's 7, an agent's row written after its outcomes (golemd.storage.rollforward).
    [_AGENTS_FIN_UPTO, _INVOCATIONS_FIN],
]
SCHEMA_VERSION = len(MIGRATIONS)
CURRENT_VERSION = 2
CURRENT: list[str] = [_AGENTS, _INVOCATIONS, _EVENTS, _EVENTS_AGENT, _EFFECTS, _PROMISES, _PROMISES_AGENT,
                      _AGENTS_FIN_UPTO, _INVOCATIONS_FIN]

# Taken for the length of a migration's transaction: two daemons starting
# on one new database must not both create it.
_MIGRATION_LOCK = 0x676F6C656D64  # "golemd"


class Executor(Protocol):
    def execute(self, query: Any, params: Any = ...) -> Any: ...


def migrate(conn: Executor, where: str) -> None:
    """Bring the database up to SCHEMA_VERSION in one transaction; refuse
    one written by a newer golemd. `conn` is in autocommit mode."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS golemd_schema(version integer NOT NULL)")
        row = conn.execute("SELECT version FROM golemd_schema").fetchone()
        version = 0 if row is None else int(row[0] if isinstance(row, tuple) else row["version"])
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{where} was written by a newer golemd (schema {version}; "
                               f"this one knows {SCHEMA_VERSION})")
        if row is None:
            conn.execute("INSERT INTO golemd_schema(version) VALUES (0)")
        if version == 0 and SCHEMA_VERSION == CURRENT_VERSION and _empty(conn):
            log.info("creating a new store in %s at schema %d", where, SCHEMA_VERSION)
            _run(conn, CURRENT, SCHEMA_VERSION)
        else:
            for step in range(version, SCHEMA_VERSION):
                log.info("migrating %s from schema %d to %d", where, step, step + 1)
                _run(conn, MIGRATIONS[step], step + 1)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _empty(conn: Executor) -> bool:
    """No table of ours yet but the version's (a schema 0 with tables is upgraded in steps)."""
    return conn.execute("SELECT 1 FROM pg_tables WHERE schemaname = current_schema() "
                        "AND tablename <> 'golemd_schema' LIMIT 1").fetchone() is None


def _run(conn: Executor, statements: list[str], version: int) -> None:
    for stmt in statements:
        conn.execute(stmt)
    conn.execute("UPDATE golemd_schema SET version = %s", (version,))
