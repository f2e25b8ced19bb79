"""Suspension for idleness, resumption from the saved snapshot, and reloads
(a worker on replaced code runs no new call)."""

from __future__ import annotations

import pytest

from golemd.engine.effects import IDLE, STOP_NOW, Arm, Timer
from golemd.model.states import AgentStatus
from tests.engine.harness import World, encode_state


@pytest.fixture
def world(make_world) -> World:
    return make_world(idle_timeout=10)


def call(world: World, key: str, value: object = None) -> object:
    c = world.invoke(key)
    world.commit()
    if world.sim.worker.phase != "ready":
        world.ready()
    world.reply(value)
    world.commit()
    return c


def test_going_idle_arms_the_idle_timer(world: World) -> None:
    call(world, "a")
    assert world.sim.armed(Timer.IDLE) == 10
    assert world.sim.effects[-1] == IDLE or IDLE in world.sim.effects
    assert world.status is AgentStatus.IDLE


def test_the_idle_timer_suspends_the_agent(world: World) -> None:
    call(world, "a")
    world.advance(10)
    assert world.sim.stops == [STOP_NOW]
    world.commit()
    assert "suspended" in world.store.events_of(world.default)
    world.die()
    assert world.status is AgentStatus.SUSPENDED
    assert world.sim.timers == {}


def test_a_suspended_agent_resumes_from_its_snapshot(world: World) -> None:
    call(world, "a")
    world.advance(10)
    world.die()
    b = world.invoke("b")
    world.commit()
    assert world.sim.spawns == [None, encode_state(["a"])]
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.saved_state() == ["a", "b"]
    assert "resumed_from_snapshot" in world.store.events_of(world.default)


def test_the_idle_timer_is_one_per_idle_spell(world: World) -> None:
    call(world, "a")
    world.advance(6)
    call(world, "b")
    assert world.sim.arms(Timer.IDLE) == [10]
    world.advance(4)  # fires early for b: re-armed for what is left
    assert world.sim.stops == []
    assert world.sim.armed(Timer.IDLE) == pytest.approx(6)
    world.advance(6)
    assert world.sim.stops == [STOP_NOW]


def test_a_long_call_is_not_suspended(world: World) -> None:
    call(world, "a")
    world.invoke("b")
    world.commit()
    world.advance(30)
    assert world.sim.stops == []
    assert world.sim.armed(Timer.IDLE) is None
    world.reply()
    world.commit()
    assert world.sim.armed(Timer.IDLE) == 10


def test_no_idle_timeout_never_suspends(make_world) -> None:
    world = make_world(idle_timeout=0)
    call(world, "a")
    assert Timer.IDLE not in world.sim.timers
    assert not any(isinstance(e, Arm) and e.timer is Timer.IDLE for e in world.sim.effects)


def test_suspend_of_a_busy_agent_is_refused(world: World) -> None:
    world.invoke("a")
    world.commit()
    assert world.suspend() is False
    assert world.sim.stops == []


def test_suspend_of_an_idle_agent(world: World) -> None:
    call(world, "a")
    assert world.suspend() is True
    assert world.sim.stops == [STOP_NOW]
    assert world.sim.armed(Timer.IDLE) is None
    assert world.suspend() is True  # on its way out already
    assert world.sim.stops == [STOP_NOW]


def test_suspend_of_a_suspended_agent(world: World) -> None:
    assert world.suspend() is False


def test_a_suspended_worker_is_idle_until_it_is_dead(world: World) -> None:
    call(world, "a")
    world.suspend()
    assert world.status is AgentStatus.IDLE
    world.die(reap=False)
    assert world.status is AgentStatus.SUSPENDED


def test_no_early_start_while_the_worker_is_being_suspended(world: World) -> None:
    call(world, "a")
    world.suspend()
    assert not world.eng.ready_warm()
    world.invoke("b")
    assert world.sim.sent == ["a"]


def test_a_call_arriving_while_the_worker_is_suspended_is_no_crash(world: World) -> None:
    call(world, "a")
    world.advance(10)  # suspended: killed, not reaped yet
    b = world.invoke("b")
    world.commit()
    world.die()
    assert world.status is AgentStatus.RUNNING
    assert world.eng.retry_count == 0
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"


# -- reloads -----------------------------------------------------------------


def test_no_early_start_on_replaced_code(world: World) -> None:
    call(world, "a")
    world.reload()
    assert not world.eng.ready_warm()


def test_after_a_reload_the_next_call_starts_a_new_worker(world: World) -> None:
    call(world, "a")
    world.reload()
    b = world.invoke("b")
    world.commit()
    assert world.sim.stops == [STOP_NOW]  # the old worker runs no new call
    world.die()
    assert world.status is AgentStatus.RUNNING  # not Retrying
    assert len(world.sim.spawns) == 2
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.eng.retry_count == 0


def test_a_worker_on_replaced_code_finishes_its_call_then_stops(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.reload()
    assert world.sim.stops == []
    world.reply("A")
    assert world.sim.stops == [STOP_NOW]
    world.commit()
    assert a.value == "A"
    world.die()
    assert world.status is AgentStatus.SUSPENDED


def test_a_worker_started_before_a_reload_is_stopped_when_idle(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.reload()  # while its worker was being built on the old code
    world.ready()
    world.reply()
    assert world.sim.stops == [STOP_NOW]
