"""One invocation as the supervisor holds it, and how its callers are answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from golemd.errors import GolemError
from golemd.states import InvocationStatus, check_transition

Listener = Callable[[dict[str, Any]], None]


@dataclass(eq=False)
class Invocation:
    key: str
    method: str
    args: list[Any]
    args_packed: bytes
    seq: int
    created_at: float
    status: InvocationStatus
    schedule_at: float | None = None
    timeout: float | None = None
    started_at: float | None = None
    attempts: int = 0
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    # The commit of its enqueue; it must not start before that is durable.
    journaled: asyncio.Future[None] | None = None

    def move(self, new: InvocationStatus) -> None:
        self.status = check_transition(self.status, new)

    def public(self) -> dict[str, Any]:
        return {"idempotency_key": self.key, "method": self.method, "args": self.args,
                "status": self.status.value, "created_at": self.created_at,
                "schedule_at": self.schedule_at}


def resolve(futures: list[asyncio.Future[Any]], value: Any = None,
            error: GolemError | None = None) -> None:
    """Answer every awaiting caller; callers that went away are skipped."""
    for fut in futures:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)
    futures.clear()
