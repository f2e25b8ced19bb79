"""Which store a daemon opens: its configuration's `store` (a PostgreSQL URL),
or by default golemd.db in the state directory (SQLite). Each store's module
is imported only when it is chosen: psycopg only for PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from golemd.config import Config
    from golemd.storage.base import Store


def open_store(config: Config) -> Store:
    """The daemon's store. Raises StoreUnavailable when it cannot be reached
    (PostgreSQL down longer than the store waits, a database in use)."""
    if config.store:
        from golemd.storage.postgres import PostgresStore

        return PostgresStore(config.store)
    from golemd.storage.sqlite import SqliteStore

    return SqliteStore(config.db_path, config.synchronous)
