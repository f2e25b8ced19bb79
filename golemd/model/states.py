"""Agent and invocation states, and the invocation transition table.

Imports nothing from golemd: both the daemon and the tests use it.
An agent's status is *derived* from what the supervisor knows (worker alive,
invocation running, held by the user...), so it can never disagree with the
facts; an invocation's status changes only through `check_transition`.
"""

from __future__ import annotations

from enum import StrEnum


class AgentStatus(StrEnum):
    IDLE = "Idle"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    INTERRUPTED = "Interrupted"
    RETRYING = "Retrying"
    FAILED = "Failed"


class InvocationStatus(StrEnum):
    SCHEDULED = "scheduled"  # has a schedule_at in the future; counts as pending
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


ACTIVE = frozenset({InvocationStatus.SCHEDULED, InvocationStatus.PENDING, InvocationStatus.RUNNING})
FINISHED = frozenset({InvocationStatus.COMPLETED, InvocationStatus.FAILED, InvocationStatus.CANCELED})

_S = InvocationStatus
TRANSITIONS: dict[InvocationStatus, frozenset[InvocationStatus]] = {
    # scheduled -> pending when due; -> failed when the agent fails or is deleted
    _S.SCHEDULED: frozenset({_S.PENDING, _S.CANCELED, _S.FAILED}),
    _S.PENDING: frozenset({_S.RUNNING, _S.CANCELED, _S.FAILED}),
    # running -> pending: interrupted or retried after the process died
    _S.RUNNING: frozenset({_S.COMPLETED, _S.FAILED, _S.PENDING}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELED: frozenset(),
}


class TransitionError(RuntimeError):
    pass


def check_transition(old: InvocationStatus, new: InvocationStatus) -> InvocationStatus:
    """Return `new` if old -> new is an allowed edge, else raise TransitionError."""
    if new not in TRANSITIONS[old]:
        raise TransitionError(f"invocation cannot go from {old.value} to {new.value}")
    return new


def derive_agent_status(*, failed: bool, interrupted: bool, retrying: bool, running: bool,
                        worker_alive: bool) -> AgentStatus:
    """The agent status from the supervisor's facts, most specific first."""
    if failed:
        return AgentStatus.FAILED
    if interrupted:
        return AgentStatus.INTERRUPTED
    if retrying:
        return AgentStatus.RETRYING
    if running:
        return AgentStatus.RUNNING
    if worker_alive:
        return AgentStatus.IDLE
    return AgentStatus.SUSPENDED
