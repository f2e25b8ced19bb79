"""The writes of an agent's and an invocation's row by the columns given
(Store.insert_agent, update_agent, update_invocation), for every store: the
statement for each set of columns is built once, since these are on every
invocation's path. A store says how it replaces a row (_insert_sql); its
_exec takes `?` placeholders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from golemd.storage.schema import AGENT_COLS


class ColumnWrites:
    """Mixed into a store, whose _exec and _insert_sql these use."""

    _statements: dict[tuple[str, str, tuple[str, ...]], str]

    def _exec(self, sql: str, params: Any = (), many: bool = False) -> Any:
        raise NotImplementedError

    def _insert_sql(self, table: str, cols: tuple[str, ...]) -> str:
        """An INSERT of these columns that replaces the row of the same key whole."""
        raise NotImplementedError

    def _sql(self, kind: str, table: str, cols: tuple[str, ...]) -> str:
        """The statement for these columns, built once."""
        sql = self._statements.get((kind, table, cols))
        if sql is None:
            if kind == "insert":
                sql = self._insert_sql(table, cols)
            else:
                where = "agent_id = ?" if table == "agents" else "agent_id = ? AND key = ?"
                sql = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in cols)} WHERE {where}"
            self._statements[(kind, table, cols)] = sql
        return sql

    def insert_agent(self, row: Mapping[str, Any]) -> None:
        cols = tuple(c for c in AGENT_COLS if c in row)
        self._exec(self._sql("insert", "agents", cols), [row[c] for c in cols])

    def update_agent(self, agent_id: str, **cols: Any) -> None:
        self._exec(self._sql("update", "agents", tuple(cols)), [*cols.values(), agent_id])

    def update_invocation(self, agent_id: str, key: str, **cols: Any) -> None:
        self._exec(self._sql("update", "invocations", tuple(cols)), [*cols.values(), agent_id, key])
