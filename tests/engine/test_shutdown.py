"""Draining and shutdown: nothing new starts; the running invocation's
caller gets SHUTTING_DOWN once its worker is dead, and it stays pending."""

from __future__ import annotations

from golemd.engine.effects import IDLE, STOP_NOW
from golemd.model.errors import Code
from tests.engine.harness import World


def test_draining_starts_nothing_new(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    world.commit()
    world.ready()
    world.ctx.draining = True
    world.reply("A")
    world.commit()
    assert world.sim.sent == ["a"]
    assert world.eng.current is None and world.eng.pending_count == 1
    assert world.sim.effects[-1] == IDLE


def test_draining_lets_the_running_call_finish(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.ctx.draining = True
    world.reply("A")
    world.commit()
    assert a.value == "A"


def test_draining_refuses_new_invocations(world: World) -> None:
    world.ctx.draining = True
    c = world.invoke("a")
    assert c.code == Code.SHUTTING_DOWN


def test_shutdown_kills_the_running_worker_and_keeps_the_invocation_pending(world: World) -> None:
    a = world.invoke("a")
    world.invoke("b")
    world.commit()
    world.ready()
    world.shutdown()
    assert world.sim.stops == [STOP_NOW]
    assert not a.answered
    world.die()
    assert a.code == Code.SHUTTING_DOWN
    assert "runs after the restart" in a.error.message
    assert [i.key for i in world.eng.queue.fifo] == ["a", "b"]
    world.commit()
    assert world.journaled_status("a") == "pending"
    assert world.journaled_status("b") == "pending"
    assert len(world.sim.spawns) == 1


def test_shutdown_during_the_backoff(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.crash()
    world.shutdown()
    assert a.code == Code.SHUTTING_DOWN
    assert world.sim.timers == {}
    assert len(world.sim.spawns) == 1


def test_shutdown_while_idle_stops_the_worker(world: World) -> None:
    world.warm()
    world.shutdown()
    assert world.sim.stops == [STOP_NOW]
    world.die()
    assert world.eng.current is None


def test_shutdown_while_the_worker_starts(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.shutdown()
    world.die()
    assert a.code == Code.SHUTTING_DOWN
    assert world.sim.sent == []


def test_a_crash_while_draining_keeps_the_invocation(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.ctx.draining = True
    world.crash()
    assert a.code == Code.SHUTTING_DOWN
    assert world.eng.retry_count == 0
    assert [i.key for i in world.eng.queue.fifo] == ["a"]
