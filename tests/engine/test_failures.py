"""Failures (DESIGN.md §1): a method that raises fails only its invocation; a
dying process is retried with backoff, then AGENT_DIED; a crash loop while
starting or a raising constructor fails the agent; protocol errors; timeouts."""

from __future__ import annotations

import pytest

from golemd.engine.effects import STOP_NOW, STOP_POLITELY, Arm, Timer
from golemd.model.errors import Code
from golemd.model.states import AgentStatus
from tests.engine.harness import World, encode_state


def start(world: World, *keys: str, **kw) -> list:
    callers = [world.invoke(k, **kw) for k in keys]
    world.commit()
    if world.sim.worker is not None and world.sim.worker.phase != "ready":
        world.ready()
    return callers


# -- a method that raises ----------------------------------------------------------


def test_a_raising_method_fails_its_invocation(world: World) -> None:
    (a,) = start(world, "a")
    world.raise_("ZeroDivisionError", "division by zero")
    world.commit()
    assert a.code == Code.INVOCATION_FAILED
    assert a.error.message == "ZeroDivisionError: division by zero"
    assert a.error.details["type"] == "ZeroDivisionError"
    assert "traceback" in a.error.details


def test_after_a_raising_method_the_agent_goes_on_with_the_same_worker(world: World) -> None:
    a, b = start(world, "a", "b")
    world.raise_()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.sim.spawns == [None] and world.sim.stops == []
    assert world.status is AgentStatus.IDLE
    assert world.eng.failed_error is None


def test_another_error_code_from_the_worker_keeps_its_message(world: World) -> None:
    (a,) = start(world, "a")
    world.sim.raise_("PicklingError", "cannot pickle", code=Code.SNAPSHOT_FAILED.value)
    world.commit()
    assert a.code == Code.SNAPSHOT_FAILED and a.error.message == "cannot pickle"


# -- the worker dies during a call -------------------------------------------------


def test_a_crash_is_retried_after_a_backoff(world: World) -> None:
    (a,) = start(world, "a")
    world.crash()
    assert world.sim.effects[-1] == Arm(Timer.RETRY, 0.1)
    assert world.status is AgentStatus.RETRYING
    assert world.eng.retry_count == 1
    world.fire(Timer.RETRY)
    assert world.status is AgentStatus.RUNNING
    world.ready()
    world.reply("A")
    world.commit()
    assert a.value == "A"
    assert world.sim.sent == ["a", "a"]
    assert world.status is AgentStatus.IDLE


def test_nothing_spawns_during_the_backoff(world: World) -> None:
    start(world, "a")
    world.crash()
    world.advance(0.09)
    assert len(world.sim.spawns) == 1
    world.advance(0.01)
    assert len(world.sim.spawns) == 2


def test_a_retry_starts_from_the_saved_state(world: World) -> None:
    world.warm()
    start(world, "a")
    world.crash()
    world.fire(Timer.RETRY)
    assert world.sim.spawns[-1] == encode_state(["warm0"])


def test_the_retry_is_journaled(world: World) -> None:
    start(world, "a")
    world.crash()
    world.commit()
    assert world.store.committed.agents[world.default]["retry_count"] == 1
    events = world.store.events_of(world.default)
    assert "process_died" in events and "retried" in events
    # the retry says why: the oplog shows it on the retried entry itself
    (retried,) = [e for e in world.store.committed.events if e["kind"] == "retried"]
    assert retried["key"] == "a" and retried["detail"] == "attempt 2 after 0.1s: killed by SIGSEGV"


def test_backoff_doubles_up_to_its_cap(make_world) -> None:
    world = make_world(idle_timeout=0, retry_attempts=6, retry_backoff_initial=0.1,
                       retry_backoff_max=0.3)
    start(world, "a")
    for _ in range(5):
        world.crash()
        world.fire(Timer.RETRY)
        world.ready()
    assert [d for d in world.sim.arms(Timer.RETRY) if d is not None] == pytest.approx(
        [0.1, 0.2, 0.3, 0.3, 0.3])


def test_agent_died_after_the_retry_attempts(world: World) -> None:
    (a,) = start(world, "a")
    for _ in range(2):
        world.crash("killed by SIGKILL")
        world.fire(Timer.RETRY)
        world.ready()
    world.crash("killed by SIGKILL")
    assert world.sim.armed(Timer.RETRY) is None
    assert not a.answered
    world.commit()
    assert a.code == Code.AGENT_DIED
    assert "on all 3 attempts" in a.error.message and "SIGKILL" in a.error.message
    assert world.eng.retry_count == 2
    assert world.status is AgentStatus.SUSPENDED


def test_after_agent_died_the_agent_goes_on_with_its_queue(world: World) -> None:
    a, b = start(world, "a", "b")
    for _ in range(3):
        world.crash()
        if world.sim.timers.get(Timer.RETRY):
            world.fire(Timer.RETRY)
        world.ready()
    world.reply("B")
    world.commit()
    assert a.code == Code.AGENT_DIED and b.value == "B"
    assert world.eng.failed_error is None


def test_attempts_are_counted_per_invocation(world: World) -> None:
    a, b = start(world, "a", "b")
    for _ in range(2):
        world.crash()
        world.fire(Timer.RETRY)
        world.ready()
    world.reply("A")
    world.crash()
    world.fire(Timer.RETRY)
    world.ready()
    world.reply("B")
    world.commit()
    assert (a.value, b.value) == ("A", "B")


def test_a_spawn_failure_is_retried_like_a_crash(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.spawn_fails()
    assert world.status is AgentStatus.RETRYING
    world.fire(Timer.RETRY)
    world.ready()
    world.reply("A")
    world.commit()
    assert a.value == "A"


def test_spawn_failures_end_in_agent_died(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.spawn_fails()
    world.fire(Timer.RETRY)
    world.spawn_fails()
    world.fire(Timer.RETRY)
    world.spawn_fails()
    world.commit()
    assert a.code == Code.AGENT_DIED


def test_a_retry_timer_that_fires_late_is_ignored(world: World) -> None:
    start(world, "a")
    world.eng.timer_fired(Timer.RETRY)  # stale: nothing was retrying
    world.sim.apply()
    assert len(world.sim.spawns) == 1 and world.sim.sent == ["a"]


def test_a_crash_while_idle_suspends_the_agent(world: World) -> None:
    world.warm()
    world.crash()
    assert world.status is AgentStatus.SUSPENDED
    world.commit()
    assert world.store.events_of(world.default)[-1] == "process_died"
    b = world.invoke("b")
    world.commit()
    assert world.sim.spawns[-1] == encode_state(["warm0"])
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"


def test_a_lost_worker_gets_no_call_before_it_is_reaped(world: World) -> None:
    world.warm()
    world.crash(reap=False)
    assert world.status is AgentStatus.SUSPENDED
    world.invoke("b")
    world.commit()
    assert world.sim.sent == ["warm0"] and len(world.sim.spawns) == 1


def test_an_idle_death_reaped_after_the_next_call_began_is_no_crash_of_that_call(world: World) -> None:
    world.warm()
    world.crash(reap=False)
    b = world.invoke("b")
    world.commit()  # b begins: it waits for the dead worker to be reaped
    world.reap()
    assert world.status is AgentStatus.RUNNING  # not Retrying: b never ran on that worker
    assert world.eng.retry_count == 0
    assert len(world.sim.spawns) == 2
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"


def test_a_crash_during_a_call_lost_then_reaped(world: World) -> None:
    start(world, "a")
    world.crash(reap=False)
    assert world.status is AgentStatus.RUNNING
    assert world.sim.timers == {}
    world.reap()
    assert world.status is AgentStatus.RETRYING


# -- a crash loop while starting; the constructor raises ---------------------------


def test_a_crash_loop_while_starting_fails_the_agent(world: World) -> None:
    a = world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.crash()
    world.fire(Timer.RETRY)
    world.crash()
    world.fire(Timer.RETRY)
    world.crash("exit status 1")
    assert world.status is AgentStatus.FAILED
    world.commit()
    assert a.code == Code.AGENT_FAILED and b.code == Code.AGENT_FAILED
    assert "cannot start" in a.error.message and "3 times in a row" in a.error.message
    assert world.eng.pending_count == 0


def test_a_worker_that_was_built_once_resets_the_crash_loop(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.crash()
    world.fire(Timer.RETRY)
    world.crash()
    world.fire(Timer.RETRY)
    world.ready()
    world.reply("A")
    world.invoke("b")
    world.commit()
    world.crash()  # b is running: a death during a call, not while starting
    world.commit()
    assert a.value == "A"
    assert world.status is AgentStatus.RETRYING


def test_the_constructor_raising_fails_the_agent_and_its_queue(world: World) -> None:
    a = world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.constructor_fails("TypeError", "__init__() missing 1 required positional argument")
    assert world.status is AgentStatus.FAILED
    assert world.sim.stops == [STOP_NOW]
    world.commit()
    assert a.code == Code.AGENT_FAILED and b.code == Code.AGENT_FAILED
    assert "the constructor of Counter raised TypeError" in a.error.message
    world.die()
    assert world.status is AgentStatus.FAILED
    assert world.eng.pending_count == 0
    assert world.store.committed.agents[world.default]["failed_error"]


def test_a_failed_agent_refuses_new_invocations(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.constructor_fails()
    world.die()
    world.commit()
    c = world.invoke("c")
    assert c.code == Code.AGENT_FAILED
    assert world.sim.spawns == [None]


def test_a_failed_agent_fails_its_scheduled_invocations_too(world: World) -> None:
    s = world.invoke("s", schedule_at=world.clock() + 60)
    world.invoke("a")
    world.commit()
    world.constructor_fails()
    world.commit()
    assert s.code == Code.AGENT_FAILED
    assert world.sim.armed(Timer.SCHEDULE) is None


def test_delete_clears_a_failed_agent(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.constructor_fails()
    old = world.delete()
    old.die()
    world.commit()
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"


# -- protocol errors ------------------------------------------------------------------


def test_a_protocol_error_fails_that_invocation(world: World) -> None:
    a, b = start(world, "a", "b")
    world.crash("sent a frame it should not", protocol_error=True)
    world.commit()
    assert a.code == Code.PROTOCOL_ERROR
    assert "broke the control protocol" in a.error.message
    assert world.eng.retry_count == 0
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"


# -- timeouts ------------------------------------------------------------------------------


def test_a_call_with_a_timeout_arms_it_on_send(world: World) -> None:
    start(world, "a", timeout=5)
    assert world.sim.armed(Timer.TIMEOUT) == 5


def test_the_timeout_is_disarmed_by_the_reply(world: World) -> None:
    start(world, "a", timeout=5)
    world.reply()
    assert world.sim.armed(Timer.TIMEOUT) is None
    assert world.sim.effects[-2:] != [] and Arm(Timer.TIMEOUT, None) in world.sim.effects


def test_a_timeout_stops_the_worker_politely_and_fails_the_invocation(world: World) -> None:
    a, b = start(world, "a", "b", timeout=5)
    world.advance(5)
    assert world.sim.stops == [STOP_POLITELY]
    assert not a.answered
    world.die()
    world.commit()
    assert a.code == Code.TIMEOUT
    assert "ran longer than its timeout of 5s" in a.error.message
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"


def test_a_call_without_timeout_arms_none(world: World) -> None:
    start(world, "a")
    assert Timer.TIMEOUT not in world.sim.timers


def test_the_timeout_counts_from_the_send_not_the_spawn(world: World) -> None:
    world.invoke("a", timeout=5)
    world.commit()
    world.advance(60)  # a slow start
    world.ready()
    assert world.sim.armed(Timer.TIMEOUT) == 5


def test_a_reply_racing_the_timeout_leaves_no_stale_stop_reason(world: World) -> None:
    a = world.invoke("a", timeout=5)
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.advance(5)
    world.reply("A")  # it finished just as the timer fired
    world.die()
    world.ready()
    world.reply("B")
    world.commit()
    assert a.value == "A" and b.value == "B"
