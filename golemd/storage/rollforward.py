"""An agent's row, read rolled forward over its newest completed invocations.

An agent's row (its counts, its last activity, its snapshot) is not
rewritten with every outcome: that was a statement and a page in every
call's commit. A completed invocation whose row holds everything it changed
(its snapshot, when it changed the state, is small enough to keep per
invocation) carries the agent's finish number `fin`, and the agent's row is
written a little later (Store.write_later) with `fin_upto`, the newest
number it takes in. Whoever reads an agent (recovery, a cluster node taking
it over, the engine going back to the saved state after a failed commit)
folds in the rows numbered above its fin_upto: what the engine did to the
row for each of them. Any other outcome (a failure, a state too large to
keep per invocation, a prune) writes the agent's row in its own commit.

Its SQL is what both dialects read alike (`?` placeholders)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_LAZY = ("SELECT i.agent_id, i.fin, i.finished_at, i.snapshot FROM invocations i JOIN agents a "
         "ON a.agent_id = i.agent_id WHERE i.fin IS NOT NULL AND i.fin > a.fin_upto")
_LAZY_ALL = _LAZY + " ORDER BY i.agent_id, i.fin"
_LAZY_ONE = _LAZY + " AND a.agent_id = ? AND i.agent_id = ? ORDER BY i.fin"


def roll_forward(row: dict[str, Any], lazy: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """`row` with the agent's completed invocations above its fin_upto
    folded in, oldest first, as the engine counted them (in place)."""
    for inv in lazy:
        row["completed_count"] += 1
        if inv["finished_at"] is not None and inv["finished_at"] > row["last_active_at"]:
            row["last_active_at"] = inv["finished_at"]
        if inv["snapshot"] is not None:  # None: the call left the state as it was
            row["snapshot"] = inv["snapshot"]
        row["fin_upto"] = inv["fin"]
    return row


class RollForward:
    """The reads of an agent's row, mixed into a store, whose _rows these use."""

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def load_agents(self) -> list[dict[str, Any]]:
        rows = {r["agent_id"]: r for r in self._rows("SELECT * FROM agents")}
        lazy: dict[str, list[dict[str, Any]]] = {}
        for inv in self._rows(_LAZY_ALL):
            lazy.setdefault(inv["agent_id"], []).append(inv)
        for agent_id, invs in lazy.items():
            roll_forward(rows[agent_id], invs)
        return list(rows.values())

    def agent_row(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's row rolled forward, or None."""
        rows = self._rows("SELECT * FROM agents WHERE agent_id = ?", (agent_id,))
        if not rows:
            return None
        return roll_forward(rows[0], self._rows(_LAZY_ONE, (agent_id, agent_id)))

    def saved_snapshot(self, agent_id: str) -> bytes | None:
        row = self.agent_row(agent_id)
        return row["snapshot"] if row else None
