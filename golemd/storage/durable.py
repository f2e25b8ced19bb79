"""A store's rows for durable execution: each invocation's effects journal,
and the promises invocations create (golemd.storage.base, "durable
execution"). A part of SqliteStore and PostgresStore, kept apart because it
is its own table pair with its own life: written per effect, read when an
invocation runs again, dropped with the invocation or its agent. Its SQL is
what both dialects read alike (`?` placeholders, which PostgresStore turns
into its own)."""

from __future__ import annotations

from typing import Any

from golemd.storage.base import AgentLoad
from golemd.storage.rows import by_invocation

_EFFECT_COLS = "agent_id, key, seq, kind, request, result, started_at, until, finished_at"
_PUT_EFFECT = (f"INSERT INTO effects({_EFFECT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (agent_id, key, seq) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in ("kind", "request", "result", "started_at", "until",
                                                          "finished_at")))


class DurableRows:
    """Mixed into a store, whose _exec, _changed and _rows these use."""

    def _exec(self, sql: str, params: Any = (), many: bool = False) -> object:
        """A write in the open transaction (`many`: once per row of `params`)."""
        raise NotImplementedError

    def _changed(self, sql: str, params: Any = ()) -> int:
        """A write in the open transaction; how many rows it changed."""
        raise NotImplementedError

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def agent_row(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's row as it reads (golemd.storage.rollforward), or None."""
        raise NotImplementedError

    def put_effect(self, agent_id: str, key: str, seq: int, kind: str, request: bytes,
                   started_at: float, until: float | None = None, result: bytes | None = None,
                   finished_at: float | None = None) -> None:
        self._exec(_PUT_EFFECT, (agent_id, key, seq, kind, request, result, started_at, until, finished_at))

    def finish_effect(self, agent_id: str, key: str, seq: int, result: bytes, finished_at: float) -> None:
        self._exec("UPDATE effects SET result = ?, finished_at = ? WHERE agent_id = ? AND key = ? AND seq = ?",
                   (result, finished_at, agent_id, key, seq))

    def load_effects(self, agent_id: str, key: str) -> list[dict[str, Any]]:
        return self._rows(f"SELECT {_EFFECT_COLS} FROM effects WHERE agent_id = ? AND key = ? ORDER BY seq",
                          (agent_id, key))

    def load_one(self, agent_id: str) -> AgentLoad:
        """Store.load_one, in the SQL both stores read."""
        row = self.agent_row(agent_id)
        top = self._rows("SELECT max(seq) AS top FROM invocations WHERE agent_id = ?", (agent_id,))[0]["top"]
        active = self._rows("SELECT * FROM invocations WHERE agent_id = ? AND status IN "
                            "('pending', 'running', 'scheduled') ORDER BY seq", (agent_id,))
        return AgentLoad(row, 0 if top is None else top + 1, active,
                         self._active_effects(agent_id))

    def load_active_effects(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        return self._active_effects(None)

    def _active_effects(self, agent_id: str | None) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """load_active_effects, of one agent or of all."""
        one = "AND i.agent_id = ? " if agent_id is not None else ""
        return by_invocation(self._rows(
            f"SELECT {', '.join('e.' + c.strip() for c in _EFFECT_COLS.split(','))} "
            "FROM invocations i JOIN effects e ON e.agent_id = i.agent_id AND e.key = i.key "
            f"WHERE i.status IN ('pending', 'running', 'scheduled') {one}"
            "ORDER BY e.agent_id, e.key, e.seq", (agent_id,) if agent_id is not None else ()))

    def agent_effects(self, agent_id: str) -> list[dict[str, Any]]:
        return self._rows(f"SELECT {_EFFECT_COLS} FROM effects WHERE agent_id = ? ORDER BY started_at, seq",
                          (agent_id,))

    def put_promise(self, promise_id: str, agent_id: str, key: str, seq: int, created_at: float) -> None:
        self._exec("INSERT INTO promises(id, agent_id, key, seq, created_at) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (id) DO NOTHING", (promise_id, agent_id, key, seq, created_at))

    def complete_promise(self, promise_id: str, value: bytes, completed_at: float) -> bool:
        return self._changed("UPDATE promises SET value = ?, completed_at = ? WHERE id = ? AND completed_at IS NULL",
                             (value, completed_at, promise_id)) > 0

    def get_promise(self, promise_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM promises WHERE id = ?", (promise_id,))
        return rows[0] if rows else None

    def list_promises(self, agent_id: str | None = None, pending: bool = True) -> list[dict[str, Any]]:
        where = ["completed_at IS NULL"] if pending else []
        params: tuple[Any, ...] = ()
        if agent_id is not None:
            where.append("agent_id = ?")
            params = (agent_id,)
        sql = "SELECT * FROM promises"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self._rows(sql + " ORDER BY created_at, id", params)

    def _delete_durable(self, agent_id: str, keys: list[str] | None = None) -> None:
        """An agent's effects and promises (all, or those of these invocations)."""
        if keys is None:
            self._exec("DELETE FROM effects WHERE agent_id = ?", (agent_id,))
            self._exec("DELETE FROM promises WHERE agent_id = ?", (agent_id,))
            return
        rows = [(agent_id, key) for key in keys]
        self._exec("DELETE FROM effects WHERE agent_id = ? AND key = ?", rows, many=True)
        self._exec("DELETE FROM promises WHERE agent_id = ? AND key = ?", rows, many=True)
