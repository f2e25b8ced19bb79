"""The agent status, derived in every state (DESIGN.md §1, Agent status)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from golemd.model.states import AgentStatus
from tests.engine.harness import World

A = AgentStatus


def fresh(w: World) -> None:
    pass


def starting(w: World) -> None:
    w.invoke("a")
    w.commit()


def spawned(w: World) -> None:
    starting(w)
    w.spawned()


def running(w: World) -> None:
    starting(w)
    w.ready()


def idle(w: World) -> None:
    w.warm()


def idle_being_stopped(w: World) -> None:
    w.warm()
    w.suspend()


def idle_lost(w: World) -> None:
    w.warm()
    w.crash(reap=False)


def suspended_after_idle(w: World) -> None:
    w.warm()
    w.suspend()
    w.die()


def queued_unjournaled(w: World) -> None:
    w.invoke("a")


def retrying(w: World) -> None:
    running(w)
    w.crash()


def retrying_lost(w: World) -> None:
    running(w)
    w.crash(reap=False)


def interrupted_running(w: World) -> None:
    running(w)
    w.interrupt()


def interrupted_dead(w: World) -> None:
    running(w)
    w.interrupt()
    w.die()


def interrupted_idle(w: World) -> None:
    w.warm()
    w.interrupt()


def interrupted_retrying(w: World) -> None:
    retrying(w)
    w.interrupt()


def failed(w: World) -> None:
    starting(w)
    w.constructor_fails()


def failed_dead(w: World) -> None:
    failed(w)
    w.die()


def failed_interrupted(w: World) -> None:
    failed(w)
    w.interrupt()


def resumed(w: World) -> None:
    interrupted_dead(w)
    w.resume()


def recovering(w: World) -> None:
    running(w)
    w.interrupt(recover=True)
    w.die()


def scheduled_only(w: World) -> None:
    w.invoke("s", schedule_at=w.clock() + 60)
    w.commit()


def done_and_idle(w: World) -> None:
    running(w)
    w.reply()


CASES: list[tuple[Callable[[World], None], AgentStatus]] = [
    (fresh, A.SUSPENDED),
    (queued_unjournaled, A.SUSPENDED),
    (scheduled_only, A.SUSPENDED),
    (starting, A.RUNNING),
    (spawned, A.RUNNING),
    (running, A.RUNNING),
    (done_and_idle, A.IDLE),
    (idle, A.IDLE),
    (idle_being_stopped, A.IDLE),
    (idle_lost, A.SUSPENDED),
    (suspended_after_idle, A.SUSPENDED),
    (retrying, A.RETRYING),
    (retrying_lost, A.RUNNING),
    (interrupted_running, A.INTERRUPTED),
    (interrupted_dead, A.INTERRUPTED),
    (interrupted_idle, A.INTERRUPTED),
    (interrupted_retrying, A.INTERRUPTED),
    (failed, A.FAILED),
    (failed_dead, A.FAILED),
    (failed_interrupted, A.FAILED),
    (resumed, A.RUNNING),
    (recovering, A.RUNNING),
]


@pytest.mark.parametrize(("setup", "status"), CASES, ids=[c[0].__name__ for c in CASES])
def test_status(world: World, setup: Callable[[World], None], status: AgentStatus) -> None:
    setup(world)
    assert world.status is status


def test_current_and_pending_in_every_state(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    assert (world.eng.current, world.eng.pending_count) == (None, 2)
    world.commit()
    assert (world.eng.current.key, world.eng.pending_count) == ("a", 1)
    world.ready()
    world.crash()
    assert (world.eng.current.key, world.eng.pending_count) == ("a", 1)
    world.interrupt()
    assert (world.eng.current, world.eng.pending_count) == (None, 2)
