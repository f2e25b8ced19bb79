"""golemd.model.states: the invocation transition table and the derived agent status."""

from __future__ import annotations

import itertools

import pytest

from golemd.model.states import (
    ACTIVE,
    FINISHED,
    TRANSITIONS,
    AgentStatus,
    InvocationStatus,
    TransitionError,
    check_transition,
    derive_agent_status,
)

S = InvocationStatus

# The lifecycle as DESIGN.md describes it: scheduled -> pending when due; a
# pending one starts, is canceled, or fails (agent failed or deleted); a running
# one finishes, or goes back to pending (interrupted, or retried after its
# process died). Finished is final.
EXPECTED_EDGES = {
    (S.SCHEDULED, S.PENDING), (S.SCHEDULED, S.CANCELED), (S.SCHEDULED, S.FAILED),
    (S.PENDING, S.RUNNING), (S.PENDING, S.CANCELED), (S.PENDING, S.FAILED),
    (S.RUNNING, S.COMPLETED), (S.RUNNING, S.FAILED), (S.RUNNING, S.PENDING),
}

ALL_PAIRS = list(itertools.product(S, S))


def test_status_values_are_the_wire_strings():
    assert [s.value for s in AgentStatus] == ["Idle", "Running", "Suspended", "Interrupted", "Retrying", "Failed"]
    assert {s.value for s in S} == {"scheduled", "pending", "running", "completed", "failed", "canceled"}


def test_table_is_the_documented_lifecycle():
    assert set(TRANSITIONS) == set(S)
    edges = {(old, new) for old, news in TRANSITIONS.items() for new in news}
    assert edges == EXPECTED_EDGES


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS])
def test_check_transition(old, new):
    if new in TRANSITIONS[old]:
        assert (old, new) in EXPECTED_EDGES
        assert check_transition(old, new) is new
    else:
        assert (old, new) not in EXPECTED_EDGES
        with pytest.raises(TransitionError) as info:
            check_transition(old, new)
        assert old.value in str(info.value) and new.value in str(info.value)


def test_no_self_loops():
    for s in S:
        with pytest.raises(TransitionError):
            check_transition(s, s)


@pytest.mark.parametrize("state", sorted(FINISHED))
def test_finished_states_have_no_exits(state):
    assert TRANSITIONS[state] == frozenset()
    for new in S:
        with pytest.raises(TransitionError):
            check_transition(state, new)


def test_active_and_finished_partition_the_states():
    assert ACTIVE == {S.SCHEDULED, S.PENDING, S.RUNNING}
    assert FINISHED == {S.COMPLETED, S.FAILED, S.CANCELED}
    assert ACTIVE | FINISHED == set(S)
    assert not ACTIVE & FINISHED
    # every active state can still reach a finished one
    for s in ACTIVE:
        assert TRANSITIONS[s] & FINISHED


def test_transition_error_is_a_runtime_error():
    assert issubclass(TransitionError, RuntimeError)


FLAGS = ("failed", "interrupted", "retrying", "running", "worker_alive")
PRECEDENCE = [("failed", AgentStatus.FAILED), ("interrupted", AgentStatus.INTERRUPTED),
              ("retrying", AgentStatus.RETRYING), ("running", AgentStatus.RUNNING),
              ("worker_alive", AgentStatus.IDLE)]
COMBOS = [dict(zip(FLAGS, bits, strict=True)) for bits in itertools.product((False, True), repeat=5)]


def _expected(facts: dict[str, bool]) -> AgentStatus:
    for flag, status in PRECEDENCE:
        if facts[flag]:
            return status
    return AgentStatus.SUSPENDED


@pytest.mark.parametrize("facts", COMBOS, ids=["".join("1" if v else "0" for v in c.values()) for c in COMBOS])
def test_derive_agent_status(facts):
    assert derive_agent_status(**facts) is _expected(facts)


def test_derive_agent_status_examples():
    none = dict.fromkeys(FLAGS, False)
    assert derive_agent_status(**none) is AgentStatus.SUSPENDED
    assert derive_agent_status(**{**none, "worker_alive": True}) is AgentStatus.IDLE
    assert derive_agent_status(**{**none, "worker_alive": True, "running": True}) is AgentStatus.RUNNING
    assert derive_agent_status(**{**none, "retrying": True}) is AgentStatus.RETRYING
    assert derive_agent_status(**dict.fromkeys(FLAGS, True)) is AgentStatus.FAILED
    assert derive_agent_status(**{**dict.fromkeys(FLAGS, True), "failed": False}) is AgentStatus.INTERRUPTED
    assert len(COMBOS) == 32


def test_derive_agent_status_takes_keywords_only():
    with pytest.raises(TypeError):
        derive_agent_status(False, False, False, False, True)  # type: ignore[misc]
