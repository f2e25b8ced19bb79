"""What the engine needs of the store: its seam to the journal.

Writes go into the store's open transaction; `on_commit(fn)` calls fn(None)
once everything written so far is durable, or fn(error) when that commit
failed and its writes were rolled back. golemd.storage's stores provide all
of it; the engine's tests give a store of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from golemd.model.errors import GolemError

CommitCallback = Callable[[GolemError | None], None]


class Journal(Protocol):
    def event(self, agent_id: str, ts: float, kind: str, key: str | None = None,
              method: str | None = None, detail: str | None = None) -> None: ...

    def update_agent(self, agent_id: str, **cols: Any) -> None: ...

    def update_invocation(self, agent_id: str, key: str, **cols: Any) -> None: ...

    def finish_invocation(self, rowid: int, status: str, outcome: bytes, finished_at: float,
                          started_at: float | None, snapshot: bytes | None = None,
                          snapshot_kept: bool = True, fin: int | None = None) -> None: ...

    def history(self, agent_id: str) -> list[dict[str, Any]]: ...

    def forget_invocations(self, agent_id: str, keys: list[str]) -> None: ...

    def write_before_commit(self, name: str, write: Callable[[], None]) -> None: ...

    def write_later(self, name: str, write: Callable[[], None]) -> None: ...

    def on_commit(self, fn: CommitCallback) -> None: ...

    def commit_soon(self) -> None: ...

    def get_invocation(self, agent_id: str, key: str) -> dict[str, Any] | None: ...

    def saved_snapshot(self, agent_id: str) -> bytes | None: ...

    def agent_row(self, agent_id: str) -> dict[str, Any] | None: ...

    def prune(self, agent_id: str, keep: int, older_than: float) -> int: ...
