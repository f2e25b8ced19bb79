"""What every store does with the rows it read, apart from how it read them:
the shapes the Store protocol promises (golemd.storage.base) and the choice
prune() makes. Pure: SQLite and PostgreSQL read the rows their own way and
hand them here, so that both answer the same."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

FINISHED = ("completed", "failed", "canceled")


def by_agent(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Unfinished invocations grouped by agent, each agent's in queue order (load_active)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["agent_id"], []).append(row)
    for group in out.values():
        group.sort(key=lambda r: r["seq"])
    return out


def by_invocation(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Effects, read in (agent_id, key, seq) order, grouped by invocation (load_active_effects)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault((row["agent_id"], row["key"]), []).append(row)
    return out


def history_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """history()'s rows: the stored snapshot_kept column read as snapshot_recorded."""
    for row in rows:
        row["snapshot_recorded"] = bool(row.pop("snapshot_kept"))
    return rows


def prune_choice(ranked: Sequence[Sequence[Any]], keep: int, older_than: float) -> tuple[float, list[tuple[int, str]]]:
    """What prune() drops. `ranked`: the agent's rows that carry a finish time,
    (id, finished_at, status, rank, key), newest first from rank max(keep, 1)
    on. Returns the finish time before which old events go too (that of the
    first row given) and the (id, key) of the invocations to drop: beyond the
    `keep` newest, finished by `older_than`, and finished for real (an active
    row may carry a finish time from an earlier attempt)."""
    newest = ranked[0][1]
    doomed = [(rowid, key) for rowid, finished_at, status, rank, key in ranked
              if rank > keep and finished_at <= older_than and status in FINISHED]
    return newest, doomed
