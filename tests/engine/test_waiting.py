"""The engine's side of durable execution (golemd.driver.durable sets
`waiting_for` and reports the end of a wait): a waiting invocation stays
current while its worker is stopped (parked, Suspended), runs again when the
wait ends, and every hold (interrupt, delete, shutdown) and death treats it
as it treats a running one."""

from __future__ import annotations

from golemd.engine.effects import Spawn, Stop, StopReason, Timer
from golemd.model.errors import Code
from golemd.model.states import AgentStatus
from golemd.model.states import InvocationStatus as S
from tests.engine.harness import World

PROMISE = {"promise": "p-1"}


def waiting(world: World, key: str = "a") -> None:
    """`key` runs on a warm worker and blocks on a durable wait."""
    world.warm()
    world.invoke(key)
    world.commit()
    assert world.call is not None and world.call.key == key
    world.call.waiting_for = dict(PROMISE)


def test_a_waiting_invocation_with_its_process_is_running(world: World) -> None:
    waiting(world)
    assert world.status is AgentStatus.RUNNING
    assert world.eng.parked is False


def test_suspend_waiting_stops_the_worker_and_parks_the_invocation(world: World) -> None:
    waiting(world)
    inv = world.eng.current
    world.eng.suspend_waiting(inv)
    world.sim.apply()
    assert world.sim.stops[-1].now
    world.die()
    assert world.eng.current is inv and inv.status is S.RUNNING
    assert world.eng.parked and world.status is AgentStatus.SUSPENDED
    assert world.sim.worker is None
    assert "suspended" in world.store.events_of(world.default, committed=False)
    # the wait ends: it is sent again, to a new worker, from the saved state
    inv.waiting_for = None
    world.eng.wait_ended(inv)
    world.sim.apply()
    assert isinstance(world.sim.effects[-1], Spawn)
    world.ready()
    assert world.call is inv
    world.reply(5)
    world.commit()
    assert world.journaled_status("a") == "completed"


def test_a_wait_that_ends_while_its_worker_stops_runs_again_at_once(world: World) -> None:
    waiting(world)
    inv = world.eng.current
    world.eng.suspend_waiting(inv)
    world.sim.apply()
    inv.waiting_for = None  # its result came while the worker was dying
    world.die()
    assert world.eng.parked is False
    assert isinstance(world.sim.effects[-1], Spawn)


def test_suspend_waiting_leaves_an_invocation_that_is_not_waiting(world: World) -> None:
    world.warm()
    world.invoke("a")
    world.commit()
    world.eng.suspend_waiting(world.eng.current)
    world.sim.apply()
    assert world.sim.stops == [] and world.status is AgentStatus.RUNNING


def test_a_parked_invocation_keeps_the_queue_waiting(world: World) -> None:
    waiting(world)
    world.eng.suspend_waiting(world.eng.current)
    world.sim.apply()
    world.die()
    b = world.invoke("b")
    world.commit()
    assert world.sim.worker is None and not b.answered
    assert world.eng.pending_count == 1
    world.cancel("b")
    world.commit()
    assert b.code == Code.CANCELED


def test_a_crash_while_waiting_parks_it_after_the_backoff(world: World) -> None:
    waiting(world)
    inv = world.eng.current
    world.crash()
    assert world.status is AgentStatus.RETRYING
    world.fire(Timer.RETRY)
    assert world.eng.parked and world.sim.worker is None
    inv.waiting_for = None
    world.eng.wait_ended(inv)
    world.sim.apply()
    world.ready()
    assert world.call is inv


def test_interrupt_of_a_parked_invocation_puts_it_back_at_once(world: World) -> None:
    waiting(world)
    inv = world.eng.current
    a = world.callers[-1]
    world.eng.suspend_waiting(inv)
    world.sim.apply()
    world.die()
    world.interrupt()
    assert world.eng.current is None and inv.status is S.PENDING
    assert a.code == Code.INTERRUPTED
    assert world.status is AgentStatus.INTERRUPTED
    # its wait ends while it is held: nothing runs until resume
    inv.waiting_for = None
    world.eng.wait_ended(inv)
    world.sim.apply()
    assert world.sim.worker is None
    world.resume()
    world.ready()
    assert world.call is inv


def test_a_resumed_invocation_still_waiting_parks_again(world: World) -> None:
    waiting(world)
    inv = world.eng.current
    world.interrupt()
    world.die()
    world.resume()
    assert world.eng.current is inv and world.eng.parked
    assert world.sim.worker is None


def test_interrupt_outranks_a_suspension_already_asked(world: World) -> None:
    waiting(world)
    inv = world.eng.current
    world.eng.suspend_waiting(inv)
    world.sim.apply()
    assert world.eng.stop_reason is StopReason.SUSPEND
    world.interrupt()
    world.die()
    assert world.eng.current is None and world.status is AgentStatus.INTERRUPTED


def test_delete_of_a_parked_invocation_tells_its_callers(world: World) -> None:
    waiting(world)
    a = world.callers[-1]
    world.eng.suspend_waiting(world.eng.current)
    world.sim.apply()
    world.die()
    world.delete()
    assert a.code == Code.INTERRUPTED


def test_shutdown_of_a_parked_invocation_keeps_it_journaled(world: World) -> None:
    waiting(world)
    a = world.callers[-1]
    world.eng.suspend_waiting(world.eng.current)
    world.sim.apply()
    world.die()
    world.shutdown()
    assert a.code == Code.SHUTTING_DOWN
    world.commit()
    assert world.journaled_status("a") == "pending"


def test_an_invocation_recovered_waiting_is_parked_without_a_process(world: World) -> None:
    inv = world.invocation("a")
    inv.journaled = True
    inv.waiting_for = {"until": world.clock() + 60}
    world.eng.enqueue(inv)
    world.sim.apply()
    assert world.eng.current is inv and world.eng.parked
    assert world.sim.spawns == [] and world.status is AgentStatus.SUSPENDED
    inv.waiting_for = None
    world.eng.wait_ended(inv)
    world.sim.apply()
    world.ready()
    assert world.call is inv


def test_rerun_stops_the_worker_and_runs_it_again_as_no_crash(world: World) -> None:
    waiting(world)
    inv = world.eng.current
    inv.waiting_for = None
    world.eng.rerun(inv)
    world.sim.apply()
    world.die()
    assert world.eng.retry_count == 0
    world.ready()
    assert world.call is inv


def test_effects_asked_from_a_failed_commit_are_handed_to_the_driver_at_once(world: World) -> None:
    told: list[int] = []
    world.eng.on_effects = lambda: told.append(len(world.eng.out))
    world.warm()
    world.invoke("a")
    world.commit()
    world.reply(1)
    world.invoke("b")
    world.fail_commit()
    assert told and told[0] >= 1
    assert any(isinstance(e, Stop) for e in world.sim.effects[-told[0]:])


def test_calls_sent_ahead_to_a_waiting_worker_go_back_when_it_is_suspended() -> None:
    from tests.engine.test_batching import Batch

    b = Batch(batch=3)
    a = b.start("a")
    b.invoke("b")
    b.invoke("c")
    assert b.ahead() == ["b", "c"]
    a.waiting_for = dict(PROMISE)
    b.eng.suspend_waiting(a)
    b.take()
    b.eng.worker_lost()
    b.eng.worker_exited("killed by SIGKILL")
    b.take()
    assert b.eng.parked and b.ahead() == [] and b.fifo() == ["b", "c"]
    a.waiting_for = None
    b.eng.wait_ended(a)
    assert any(isinstance(e, Spawn) for e in b.take())
    b.eng.worker_spawned()
    b.eng.worker_ready()
    b.take()
    b.reply(a)
    assert b.current() == "b"


def test_rerun_of_a_parked_invocation_sends_it_again(world: World) -> None:
    waiting(world)
    inv = world.eng.current
    world.eng.suspend_waiting(inv)
    world.sim.apply()
    world.die()
    assert world.eng.parked
    inv.waiting_for = None  # its wait's journal write failed: it replays from the journal
    world.eng.rerun(inv)
    world.sim.apply()
    world.ready()
    assert world.call is inv
