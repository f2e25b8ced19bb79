"""interrupt, resume, interrupt --recover (DESIGN.md §1)."""

from __future__ import annotations

from golemd.engine.effects import STOP_NOW, STOP_POLITELY, Timer
from golemd.model.errors import Code
from golemd.model.states import AgentStatus
from tests.engine.harness import World, encode_state


def running(world: World, *keys: str) -> list:
    """Invoke `keys`, commit, and have the first one out to a ready worker."""
    callers = [world.invoke(k) for k in keys]
    world.commit()
    if world.sim.worker.phase != "ready":
        world.ready()
    return callers


def test_interrupt_stops_the_worker_politely(world: World) -> None:
    running(world, "a")
    world.interrupt()
    assert world.sim.stops == [STOP_POLITELY]
    assert world.status is AgentStatus.INTERRUPTED


def test_interrupted_callers_get_interrupted_once_the_worker_is_dead(world: World) -> None:
    (a,) = running(world, "a")
    world.interrupt()
    assert not a.answered
    world.die()
    assert a.code == Code.INTERRUPTED
    assert "runs again on resume" in a.error.message


def test_interrupted_invocation_goes_back_to_the_head(world: World) -> None:
    running(world, "a", "b", "c")
    world.interrupt()
    world.die()
    assert [i.key for i in world.eng.queue.fifo] == ["a", "b", "c"]
    assert world.eng.pending_count == 3
    assert world.eng.current is None
    assert world.status is AgentStatus.INTERRUPTED


def test_interrupted_invocation_is_journaled_pending(world: World) -> None:
    running(world, "a")
    world.interrupt()
    world.die()
    world.commit()
    assert world.journaled_status("a") == "pending"
    assert world.store.committed.agents[world.default]["interrupted"] == 1
    (event,) = [e for e in world.store.committed.events if e["kind"] == "interrupted"]
    assert event["key"] == "a" and event["detail"] == "by the user: stopped, it runs again on resume"


def test_nothing_runs_until_resume(world: World) -> None:
    running(world, "a", "b")
    world.interrupt()
    world.die()
    world.invoke("c")
    world.commit()
    world.advance(1000)
    assert world.sim.spawns == [None]
    assert world.eng.current is None


def test_resume_runs_the_interrupted_one_again_then_the_queue(world: World) -> None:
    a, b = running(world, "a", "b")
    world.interrupt()
    world.die()
    a_again = world.invoke("a")  # a caller may attach to it again
    world.resume()
    assert world.status is AgentStatus.RUNNING
    world.ready()
    world.reply("A")
    world.reply("B")
    world.commit()
    assert world.sim.sent == ["a", "a", "b"]
    assert a.code == Code.INTERRUPTED
    assert a_again.value == "A" and b.value == "B"
    world.commit()
    assert world.store.committed.agents[world.default]["interrupted"] == 0


def test_interrupt_while_idle_holds_the_queue(world: World) -> None:
    world.warm()
    world.interrupt()
    assert world.sim.stops == []
    assert world.status is AgentStatus.INTERRUPTED
    (event,) = [e for e in world.store.view.events if e["kind"] == "interrupted"]
    assert event["key"] is None and event["detail"] == "by the user: its queue is held until resume"
    b = world.invoke("b")
    world.commit()
    assert world.eng.current is None and world.eng.pending_count == 1
    world.resume()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert len(world.sim.spawns) == 1  # the warm worker took it


def test_interrupt_while_idle_prevents_an_early_start(world: World) -> None:
    world.warm()
    world.interrupt()
    world.invoke("b")
    assert world.sim.sent == ["warm0"]


def test_interrupt_while_suspended(world: World) -> None:
    world.interrupt()
    world.invoke("a")
    world.commit()
    assert world.sim.spawns == []
    assert world.status is AgentStatus.INTERRUPTED
    world.resume()
    assert world.sim.spawns == [None]


def test_interrupt_while_the_worker_starts(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.spawned()
    world.interrupt()
    world.ready()  # its init reply was on its way: too late, it is being stopped
    assert world.sim.sent == []
    world.die()
    assert world.eng.pending_count == 1
    world.resume()
    world.ready()
    assert world.sim.sent == ["a"]


def test_interrupt_during_the_retry_backoff(world: World) -> None:
    (a,) = running(world, "a")
    world.crash()
    assert world.status is AgentStatus.RETRYING
    world.interrupt()
    assert a.code == Code.INTERRUPTED
    assert world.sim.armed(Timer.RETRY) is None
    assert world.status is AgentStatus.INTERRUPTED
    assert [i.key for i in world.eng.queue.fifo] == ["a"]
    world.resume()
    world.ready()
    assert world.sim.sent == ["a", "a"]


def test_interrupt_twice_is_one_interrupt(world: World) -> None:
    running(world, "a")
    world.interrupt()
    world.interrupt()
    world.die()
    world.commit()
    assert world.store.events_of(world.default).count("interrupted") == 1
    world.resume()
    world.ready()
    assert world.sim.sent == ["a", "a"]


def test_resume_when_not_interrupted_does_nothing(world: World) -> None:
    running(world, "a")
    writes = len(world.store.writes)
    world.resume()
    assert len(world.store.writes) == writes
    assert world.sim.sent == ["a"]


def test_resume_before_the_interrupted_worker_died(world: World) -> None:
    (a,) = running(world, "a")
    world.interrupt()
    world.resume()
    assert world.sim.spawns == [None]  # nothing new until the old one is gone
    world.die()
    assert a.code == Code.INTERRUPTED
    world.ready()
    assert world.sim.sent == ["a", "a"]


# -- interrupt --recover -----------------------------------------------------


def test_recover_kills_now_and_runs_it_again(world: World) -> None:
    (a,) = running(world, "a")
    world.interrupt(recover=True)
    assert world.sim.stops == [STOP_NOW]
    world.die()
    assert world.status is AgentStatus.RUNNING
    world.ready()
    world.reply("A")
    world.commit()
    assert a.value == "A"
    assert world.sim.sent == ["a", "a"]
    assert world.eng.retry_count == 0
    assert world.eng.current is None and not world.eng.interrupted


def test_recover_restarts_from_the_saved_state(world: World) -> None:
    world.warm()
    running(world, "a")
    world.interrupt(recover=True)
    world.die()
    assert world.sim.spawns[-1] == encode_state(["warm0"])


def test_recover_while_idle_brings_a_new_worker_up_from_the_saved_state(world: World) -> None:
    """simulate-crash on an idle agent: its status is Idle before, while its
    worker dies, and after, when a new one is up (it answered one status and
    left another when it stayed Suspended)."""
    world.warm()
    world.interrupt(recover=True)
    assert world.sim.stops == [STOP_NOW]
    assert world.status is AgentStatus.IDLE
    world.die()
    assert world.status is AgentStatus.IDLE
    assert world.sim.spawns[-1] == encode_state(["warm0"])
    world.ready()
    assert world.status is AgentStatus.IDLE
    world.commit()
    assert "process_died" in world.store.events_of(world.default)
    b = world.invoke("b")
    world.commit()
    world.reply("B")
    world.commit()
    assert b.value == "B"


def test_recover_while_idle_and_interrupted_brings_nothing_up(world: World) -> None:
    world.warm()
    world.interrupt()
    world.interrupt(recover=True)
    world.die()
    assert world.sim.worker is None
    assert world.status is AgentStatus.INTERRUPTED


def test_a_call_that_comes_while_the_idle_worker_dies_runs_on_the_new_one(world: World) -> None:
    world.warm()
    world.interrupt(recover=True)
    b = world.invoke("b")
    world.commit()
    world.die()
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.eng.retry_count == 0


def test_recover_while_the_worker_starts(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.interrupt(recover=True)
    world.die()
    assert world.sim.spawns == [None, None]
    world.ready()
    world.reply("A")
    world.commit()
    assert a.value == "A"


def test_recover_counts_no_attempt(make_world) -> None:
    world = make_world(idle_timeout=0, retry_attempts=2)
    (a,) = running(world, "a")
    for _ in range(3):
        world.interrupt(recover=True)
        world.die()
        world.ready()
    world.reply("A")
    world.commit()
    assert a.value == "A"


def test_workers_stopped_while_starting_are_no_crash_loop(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.interrupt(recover=True)
    world.die()
    world.interrupt(recover=True)
    world.die()
    world.crash()  # one real death while starting
    assert world.status is AgentStatus.RETRYING
    assert world.eng.failed_error is None


def test_a_reply_racing_the_interrupt_leaves_no_stale_stop_reason(world: World) -> None:
    a, b = running(world, "a", "b")
    world.interrupt()
    world.reply("A")  # the reply was in the pipe when SIGTERM went out
    world.die()
    world.commit()
    assert len(a.answers) == 1  # its result, or INTERRUPTED: either is fair
    world.resume()
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.sim.stops == [STOP_POLITELY]


def test_interrupt_after_recover_holds_the_invocation(world: World) -> None:
    (a,) = running(world, "a")
    world.interrupt(recover=True)  # simulate-crash...
    world.interrupt()  # ...and an interrupt before the kill is reaped
    world.die()
    assert a.code == Code.INTERRUPTED
    assert world.sim.spawns == [None]  # nothing runs until resume
    assert world.eng.current is None
    assert [i.key for i in world.eng.queue.fifo] == ["a"]
