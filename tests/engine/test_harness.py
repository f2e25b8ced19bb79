"""The harness itself: the fake journal keeps the SQLite store's promises,
and the world catches what it is there to catch."""

from __future__ import annotations

import pytest

from golemd.engine.effects import Send
from golemd.model.errors import Code
from tests.engine.harness import EffectError, FakeStore, World


def test_reads_see_the_open_transaction_commits_make_it_durable() -> None:
    store = FakeStore()
    store.insert_agent({"agent_id": "A"})
    rowid = store.enqueue_invocation("A", "k", 0, "m", b"", "pending", 0.0, None, None)
    assert store.get_invocation("A", "k")["id"] == rowid
    assert store.row("A", "k") is None
    store.commit()
    assert store.row("A", "k")["status"] == "pending"


def test_a_failed_commit_rolls_back_and_tells_every_callback() -> None:
    store = FakeStore()
    store.insert_agent({"agent_id": "A", "snapshot": b"old"})
    store.commit()
    told = []
    store.update_agent("A", snapshot=b"new")
    store.on_commit(told.append)
    store.on_commit(told.append)
    store.fail_next_commit()
    store.commit()
    assert [e.code for e in told] == [Code.STORAGE_FULL, Code.STORAGE_FULL]
    assert store.saved_snapshot("A") == b"old"


def test_on_commit_with_nothing_written_is_called_at_once() -> None:
    store = FakeStore()
    told = []
    store.on_commit(told.append)
    assert told == [None]


def test_write_before_commit_runs_once_per_name_just_before_the_commit() -> None:
    store = FakeStore()
    store.insert_agent({"agent_id": "A"})
    calls = []
    store.write_before_commit("A", lambda: calls.append(1))
    store.write_before_commit("A", lambda: calls.append(2))
    assert calls == []
    store.commit()
    assert calls == [2]
    store.commit()
    assert calls == [2]


def test_a_rolled_back_row_id_is_given_again() -> None:
    store = FakeStore()
    first = store.enqueue_invocation("A", "k1", 0, "m", b"", "pending", 0.0, None, None)
    store.fail_next_commit()
    store.commit()
    second = store.enqueue_invocation("A", "k2", 1, "m", b"", "pending", 0.0, None, None)
    assert first == second


def test_the_world_refuses_a_send_to_a_worker_being_built(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.eng.out.append(Send(world.eng.current))
    with pytest.raises(EffectError):
        world.sim.apply()


def test_the_world_notices_a_caller_answered_twice(world: World) -> None:
    c = world.invoke("a")
    world.cancel("a")
    world.commit()
    c.waiter(None, None)
    assert any("answered twice" in v for v in world.violations)
    world.violations.clear()


def test_the_world_notices_an_outcome_told_before_its_commit(world: World) -> None:
    c = world.invoke("a")
    world.commit()
    c.waiter(1, None)
    assert any("before its outcome was committed" in v for v in world.violations)
    world.violations.clear()
