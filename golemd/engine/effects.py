"""What the engine asks of the world, and the small enums its states are made of.

The engine (golemd.engine.agent) never does I/O. Each of its methods changes
its facts, writes to the Store it was given (the journal is its own seam),
and appends effects to `AgentEngine.out` for the driver to carry out: start a
worker, send it a call, stop it, arm or cancel a timer, report that the agent
went idle. The driver takes them with `take()` after every call into the
engine and reports back with events (golemd.driver.agent).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from golemd.model.invocation import Invocation


class WorkerState(StrEnum):
    """The engine's view of its agent's worker process. Str enums hash in C
    (Enum.__hash__ is Python code), and these are looked up on every call."""

    ABSENT = "absent"  # none: the agent lives in its snapshot (Suspended)
    STARTING = "starting"  # asked for (Spawn), not yet built
    READY = "ready"  # built, on the code it was started with
    DYING = "dying"  # stopped or dead, not yet reaped: nothing may be sent to it


class StopReason(StrEnum):
    """Why the engine stopped a worker that was running an invocation: read
    when its death is reported, to tell a stop from a crash."""

    RECOVER = "recover"  # interrupt --recover, simulate-crash: run it again at once (idle: a new worker)
    INTERRUPT = "interrupt"  # back to the head of the queue, held until resume
    DELETE = "delete"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    SUSPEND = "suspend"  # it waited (a call, a promise, a sleep) past suspend_after: it runs again when the wait ends


class Discard(StrEnum):
    """Why a worker's reply to an invocation must not count."""

    REFUSED = "refused"  # its enqueue failed to commit: it never existed
    UNSAVED = "unsaved"  # an earlier outcome's commit failed: run again from the saved state


class Timer(StrEnum):
    RETRY = "retry"  # the backoff after a crash
    SCHEDULE = "schedule"  # the first scheduled invocation is due
    IDLE = "idle"  # idle_timeout: suspend
    TIMEOUT = "timeout"  # the running invocation's own timeout


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start a worker from `snapshot` (None: from the constructor). Report
    worker_spawned, then worker_ready or constructor_failed; spawn_failed
    when none could be started."""

    snapshot: bytes | None


# Send and Arm are made on every call: not frozen, whose __init__ sets each
# field through object.__setattr__ (three times the cost). Nobody changes one.
@dataclass(slots=True)
class Send:
    """Send the call to the worker; report replied(inv, reply), or dropped(inv).
    `ahead`: it goes behind the one running (golemd.engine.running.top_up),
    so it may wait for the others sent ahead and go out in one write."""

    inv: Invocation
    ahead: bool = False


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the worker: SIGKILL now (`now`) or SIGTERM, then SIGKILL after the
    grace. Its death is reported as worker_lost, then worker_exited once reaped."""

    now: bool


@dataclass(slots=True)
class Arm:
    """Fire timer_fired(timer) after `delay` seconds, replacing any such timer
    armed before; a delay of None cancels it."""

    timer: Timer
    delay: float | None


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing runs and nothing more can start now (drain waits for this)."""


IDLE = Idle()
STOP_NOW = Stop(now=True)
STOP_POLITELY = Stop(now=False)

Effect = Spawn | Send | Stop | Arm | Idle
