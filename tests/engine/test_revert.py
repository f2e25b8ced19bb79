"""agent revert's choice (golemd.engine.revert.plan) and its effect on one
agent's engine (golemd.engine.control.revert)."""

from __future__ import annotations

from typing import Any

import pytest

from golemd.engine import control
from golemd.engine.effects import Stop
from golemd.engine.revert import plan
from golemd.model.errors import Code, GolemError
from tests.engine.harness import World


def row(key: str, status: str = "completed", snapshot: bytes | None = None, recorded: bool = True) -> dict[str, Any]:
    return {"key": key, "status": status, "snapshot": snapshot, "snapshot_recorded": recorded}


H = [row("a", snapshot=b"A"), row("b", snapshot=b"B"), row("c", "failed"), row("x", "canceled"),
     row("d"), row("e", snapshot=b"E")]


def test_the_last_n_that_ran_go_and_the_state_is_the_newest_kept_change():
    p = plan(H, 4, count=2)
    assert p.keys == ["d", "e"] and p.snapshot == b"B"  # d changed nothing: b's state
    assert (p.completed, p.failed) == (2, 0)
    p = plan(H, 4, count=3)
    assert p.keys == ["c", "d", "e"] and p.snapshot == b"B" and (p.completed, p.failed) == (2, 1)
    assert plan(H, 4, count=1).snapshot == b"B"  # d changed nothing


def test_canceled_ones_never_ran_and_are_not_counted():
    assert "x" not in plan(H, 4, count=4).keys


def test_reverting_everything_goes_back_to_the_constructors_state():
    p = plan(H, 4, count=5)
    assert p.keys == ["a", "b", "c", "d", "e"] and p.snapshot is None


def test_an_index_reverts_what_finished_after_it():
    p = plan(H, 4, after={"d", "e"})
    assert p.keys == ["d", "e"] and p.snapshot == b"B"
    assert plan(H, 4, after=set()).keys == []


def test_more_than_there_are_is_a_bad_request():
    with pytest.raises(GolemError) as info:
        plan(H, 4, count=6)  # five ran
    assert info.value.code == Code.BAD_REQUEST


def test_past_what_retention_kept_is_too_late():
    with pytest.raises(GolemError) as info:
        plan(H, 9, count=5)  # 9 completed ever, 4 kept: the state before "a" is gone
    assert info.value.code == Code.TOO_LATE
    assert plan(H, 9, count=2).snapshot == b"B"  # a kept snapshot is enough


def test_rows_from_before_snapshots_were_kept_stop_the_walk():
    old = [row("a", recorded=False), row("b")]
    with pytest.raises(GolemError) as info:
        plan(old, 2, count=1)
    assert info.value.code == Code.TOO_LATE


def test_revert_forgets_goes_back_and_stops_the_worker(world: World) -> None:
    world.warm()
    for key in ("a", "b"):
        world.invoke(key)
        world.commit()
        world.reply(key)
        world.commit()
    assert world.saved_state() == ["warm0", "a", "b"]
    history = world.store.history(world.default)
    control.revert(world.eng, plan(history, world.eng.completed_count, count=1))
    world.sim.apply()
    assert any(isinstance(e, Stop) for e in world.sim.effects[-2:])
    world.commit()
    assert world.saved_state() == ["warm0", "a"]
    assert world.store.row(world.default, "b") is None
    assert world.eng.completed_count == 2
    assert "reverted" in world.store.events_of(world.default)


def test_revert_is_refused_while_an_invocation_runs(world: World) -> None:
    world.warm()
    world.invoke("a")
    world.commit()
    history = world.store.history(world.default)
    with pytest.raises(GolemError) as info:
        control.revert(world.eng, plan(history, world.eng.completed_count, count=1))
    assert info.value.code == Code.TOO_LATE
