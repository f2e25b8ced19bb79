"""delete (DESIGN.md §1): the running invocation stopped and its callers told
INTERRUPTED, the queued ones CANCELED, nothing more journaled; the next
invocation creates the agent afresh."""

from __future__ import annotations

from golemd.engine.effects import STOP_POLITELY, Timer
from golemd.model.errors import Code
from tests.engine.harness import Sim, World


def writes_about(world: World, agent: str, since: int) -> list:
    return [w for w in world.store.writes[since:] if agent in w]


def test_delete_while_running(world: World) -> None:
    a = world.invoke("a")
    b = world.invoke("b")
    c = world.invoke("c")
    world.commit()
    world.ready()
    old = world.delete()
    assert old.stops == [STOP_POLITELY]
    assert b.code == Code.CANCELED and c.code == Code.CANCELED
    assert not a.answered
    old.die()
    assert a.code == Code.INTERRUPTED
    assert "deleted" in a.error.message
    assert old.sent == ["a"]


def test_delete_leaves_nothing_queued(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    world.commit()
    world.ready()
    old = world.delete()
    old.die()
    assert old.eng.current is None and old.eng.pending_count == 0


def test_no_journal_writes_after_delete(world: World) -> None:
    world.invoke("a")
    world.invoke("b", schedule_at=world.clock() + 5)
    world.commit()
    world.ready()
    old = world.delete()
    since = len(world.store.writes)
    old.reply("A")  # a reply that beat the stop
    old.die()
    world.advance(100)
    world.commit()
    assert writes_about(world, world.default, since) == []
    assert world.store.committed.agents == {}
    assert world.store.row(world.default, "a") is None


def test_delete_disarms_its_timers(make_world) -> None:
    world = make_world(idle_timeout=10)
    world.invoke("s", schedule_at=world.clock() + 50)
    world.warm()
    assert set(world.sim.timers) == {Timer.SCHEDULE, Timer.IDLE}
    old = world.delete()
    assert old.timers == {}


def test_delete_while_idle_stops_the_worker(world: World) -> None:
    world.warm()
    old = world.delete()
    assert old.stops == [STOP_POLITELY]
    old.die()
    assert old.worker is None


def test_delete_while_suspended(world: World) -> None:
    s = world.invoke("s", schedule_at=world.clock() + 50)
    world.commit()
    old = world.delete()
    assert s.code == Code.CANCELED
    assert old.stops == []


def test_delete_during_the_backoff(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.crash()
    old = world.delete()
    assert a.code == Code.INTERRUPTED
    assert old.timers == {}
    assert old.eng.current is None


def test_delete_while_the_worker_starts(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    old = world.delete()
    old.die()
    assert a.code == Code.INTERRUPTED
    assert old.sent == []


def test_a_reply_that_beat_the_delete_answers_its_caller(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    old = world.delete()
    old.reply("A")
    old.die()
    world.commit()
    assert a.value == "A"


def test_the_next_invocation_creates_the_agent_afresh(world: World) -> None:
    world.warm()
    world.invoke("a")
    world.commit()
    world.reply("first life")
    world.commit()
    old = world.delete()
    old.die()
    world.commit()
    a = world.invoke("a")  # its key is forgotten with the agent
    world.commit()
    sim: Sim = world.sim
    assert sim is not old
    assert sim.spawns == [None]
    sim.ready()
    sim.reply("second life")
    world.commit()
    assert a.value == "second life"
    assert world.saved_state() == ["a"]


def test_the_new_agent_runs_while_the_old_worker_still_dies(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.ready()
    old = world.delete()
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.reply("B")
    world.commit()
    old.die()
    assert b.value == "B"
