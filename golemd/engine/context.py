"""What every agent's engine shares: the policy, the clock, and two facts of
the whole daemon (it is draining; which generation of the code is current)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from golemd.engine.observer import Observer


@dataclass(slots=True)
class Policy:
    retry_attempts: int = 3
    retry_backoff_initial: float = 0.1
    retry_backoff_max: float = 2.0
    idle_timeout: float = 300.0  # <= 0: never suspend for idleness
    retention_count: int = 10_000
    retention_seconds: float = 86_400.0
    # States up to this size are kept with each completed invocation, for
    # agent revert; a larger one is not (revert cannot go back past it).
    revert_snapshot_bytes: int = 4096

    def backoff(self, attempts: int) -> float:
        """The wait before attempt `attempts + 1`, after `attempts` deaths."""
        return float(min(self.retry_backoff_initial * 2 ** (attempts - 1), self.retry_backoff_max))


@dataclass(slots=True)
class EngineContext:
    policy: Policy = field(default_factory=Policy)
    # Wall-clock seconds: what is journaled and shown (created_at, finished_at).
    clock: Callable[[], float] = time.time
    # A test hook at named points of the journal's life (golemd.faults); none by default.
    crash_point: Callable[[str], None] | None = None
    draining: bool = False  # no invocation starts any more
    # Bumped by a reload: a worker started on an older generation runs no new call.
    generation: int = 0
    # How many queued calls may be sent to a worker behind the one it runs
    # (golemd.engine.running.top_up); 0 sends one call at a time.
    batch: int = 0
    # Told what happened (metrics, traces: golemd.engine.observer); None: nobody watches.
    observer: Observer | None = None
