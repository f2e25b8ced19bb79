"""The driver's side of a cluster: where invokes and ops are served (the
Routing a cluster node gives the supervisor), and what a node does to an
agent it no longer owns (its lease moved to another node): stop it without
a write, since its rows are the new owner's now, and tell its callers why,
so that they ask the new owner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from golemd.driver.agent import Agent
from golemd.model.errors import GolemError
from golemd.model.invocation import Listener, resolve

Done = Callable[[dict[str, Any] | None, GolemError | None], None]


class Routing(Protocol):
    """Where an invoke is served, in a cluster (golemd.cluster.router.Router)."""

    def submit(self, req: dict[str, Any], listener: Listener | None, done: Done,
               forwarded: bool = False) -> None: ...

    def run_op(self, op: str, req: dict[str, Any], emit: Callable[[dict[str, Any]], None],
               local: Callable[[], Awaitable[dict[str, Any]]], forwarded: bool) -> Awaitable[dict[str, Any]]:
        """Any op but invoke: `local()` runs it here, or it is forwarded."""
        ...


def forget(agent: Agent, err: GolemError) -> None:
    for inv in list(agent.engine.queue.active.values()):
        resolve(inv.waiters, error=err)
    # As a delete, whose engine writes nothing from now on, without deleting the rows.
    agent.delete()
