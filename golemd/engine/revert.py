"""What `agent revert` forgets, and which state the agent goes back to.

Pure: given the agent's finished invocations in the order they finished
(Store.history), it picks the last N that ran (completed or failed), or
those that finished after an oplog index, and finds the state before them:
the snapshot of the newest kept invocation that changed the state, walking
back over those that did not (a failed invocation never changes it). With
none, the state is the constructor's, provided nothing older was pruned
(retention) and every kept one had its snapshot recorded (rows from before
schema 6 did not, nor those whose state was over revert_snapshot_bytes):
otherwise the state before is not known, and the revert is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from golemd.model.errors import Code, GolemError


@dataclass(frozen=True, slots=True)
class RevertPlan:
    keys: list[str]  # the invocations forgotten, oldest first
    snapshot: bytes | None  # the state to go back to; None: the constructor's
    completed: int  # how many of them had completed
    failed: int


def plan(history: list[dict[str, Any]], completed_count: int, *, count: int | None = None,
         after: set[str] | None = None) -> RevertPlan:
    """Forget the last `count` invocations that ran, or those whose keys are
    in `after` (they finished after the oplog index given)."""
    ran = [r for r in history if r["status"] in ("completed", "failed")]
    if count is not None:
        if count > len(ran):
            raise GolemError(Code.BAD_REQUEST, f"only {len(ran)} finished invocation"
                             f"{'' if len(ran) == 1 else 's'} can be reverted (retention keeps those)")
        cut = len(ran) - count
    else:
        keys = after or set()
        cut = next((i for i, r in enumerate(ran) if r["key"] in keys), len(ran))
    doomed, kept = ran[cut:], ran[:cut]
    snapshot: bytes | None = None
    found = False
    for row in reversed(kept):
        if row["status"] != "completed":
            continue
        if row.get("snapshot") is not None:
            snapshot, found = row["snapshot"], True
            break
        if not row.get("snapshot_recorded", True):
            break  # before snapshots were recorded: what it left is not known
    completed = sum(1 for r in doomed if r["status"] == "completed")
    if not found and doomed:
        kept_completed = sum(1 for r in kept if r["status"] == "completed")
        unknown = any(not r.get("snapshot_recorded", True) for r in kept if r["status"] == "completed")
        if unknown or kept_completed + completed < completed_count:
            raise GolemError(Code.TOO_LATE, "the state before those invocations is not kept (older "
                             "invocations were pruned by retention, changed a state larger than "
                             "revert_snapshot_bytes, or ran before golemd kept a state per invocation): "
                             "revert fewer")
    return RevertPlan([r["key"] for r in doomed], snapshot, completed, len(doomed) - completed)
