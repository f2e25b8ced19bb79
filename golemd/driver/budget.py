"""The live-worker budget (max_live_workers): which agents lose their
process when there are too many."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from golemd.config import Config
    from golemd.driver.agent import Agent


class Budgeted(Protocol):
    config: Config
    live: OrderedDict[str, Agent]


def trim(sup: Budgeted) -> None:
    """Suspend idle agents, least recently used first, until at most
    max_live_workers workers live; then agents whose invocation waits on
    a durable effect (it runs again by replay when the wait ends). Busy
    agents are left alone: over budget for a while beats making callers wait."""
    excess = len(sup.live) - sup.config.max_live_workers
    if excess <= 0:
        return
    for victim in list(sup.live.values()):
        if excess <= 0:
            break
        if victim.suspend():
            sup.live.pop(victim.name, None)
            excess -= 1
    for victim in list(sup.live.values()):
        if excess <= 0:
            break
        cur = victim.current
        if cur is not None and cur.waiting_for is not None:
            victim.suspend_waiting(cur)
            excess -= 1  # out of `live` once reaped
