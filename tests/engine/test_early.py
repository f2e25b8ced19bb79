"""The warm path: an awaited call to an idle warm agent goes to its worker
before its enqueue commits (start_early); if that commit fails it is
withdrawn: its caller told, its worker stopped, its reply ignored."""

from __future__ import annotations

from golemd.engine.effects import STOP_NOW, Timer
from golemd.model.errors import Code
from golemd.model.states import AgentStatus
from tests.engine.harness import World, encode_state


def test_an_awaited_call_to_a_warm_agent_goes_out_at_once(world: World) -> None:
    world.warm()
    assert world.eng.ready_warm()
    world.invoke("a")
    assert world.call is not None and world.call.key == "a"
    assert not world.call.journaled
    assert world.status is AgentStatus.RUNNING


def test_an_early_call_is_answered_after_the_commit_of_its_enqueue_and_outcome(world: World) -> None:
    world.warm()
    a = world.invoke("a")
    world.reply("A")
    assert not a.answered
    world.commit()
    assert a.value == "A"
    assert world.journaled_status("a") == "completed"


def test_an_early_call_whose_enqueue_committed_first(world: World) -> None:
    world.warm()
    a = world.invoke("a")
    world.commit()
    assert not a.answered
    world.reply("A")
    world.commit()
    assert a.value == "A"


def test_no_early_start_when_busy_or_queued(world: World) -> None:
    world.warm()
    world.invoke("a")
    world.invoke("b")
    assert world.sim.sent == ["warm0", "a"]
    assert [i.key for i in world.eng.queue.fifo] == ["b"]


def test_triggers_and_scheduled_calls_never_start_early(world: World) -> None:
    world.warm()
    world.trigger("t")
    world.invoke("s", schedule_at=world.clock() + 10)
    assert world.sim.sent == ["warm0"]


def test_a_trigger_attached_to_an_early_call_is_acked_at_its_commit(world: World) -> None:
    world.warm()
    world.invoke("a")
    t = world.trigger("a")
    assert not t.answered
    world.commit()
    assert t.value == {"idempotency_key": "a", "status": "running"}


def test_a_refused_early_call_is_told_and_its_worker_stopped(world: World) -> None:
    world.warm()
    a = world.invoke("a")
    world.fail_commit()
    assert a.code == Code.STORAGE_FULL
    assert world.sim.stops == [STOP_NOW]
    assert "a" not in world.eng.queue.active


def test_the_reply_of_a_refused_early_call_is_ignored(world: World) -> None:
    world.warm()
    a = world.invoke("a")
    world.fail_commit()
    world.reply("too late")
    world.commit()
    assert len(a.answers) == 1 and a.code == Code.STORAGE_FULL
    assert world.saved_state() == ["warm0"]
    world.die()
    assert world.eng.current is None
    assert world.eng.retry_count == 0
    assert world.status is AgentStatus.SUSPENDED


def test_after_a_refused_early_call_the_next_starts_from_the_saved_state(world: World) -> None:
    world.warm()
    world.invoke("a")
    world.fail_commit()
    world.die()
    b = world.invoke("b")
    world.commit()
    assert world.sim.spawns[-1] == encode_state(["warm0"])
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.saved_state() == ["warm0", "b"]


def test_a_refused_early_call_that_replied_first(world: World) -> None:
    world.warm()
    a = world.invoke("a")
    world.reply("A")  # its outcome shares the failing commit
    world.fail_commit()
    assert len(a.answers) == 1 and a.code == Code.STORAGE_FULL
    assert world.sim.stops == [STOP_NOW]
    assert world.store.row(world.default, "a") is None
    world.die()
    assert world.eng.current is None and world.eng.retry_count == 0


def test_a_queued_call_behind_a_refused_early_one(world: World) -> None:
    world.warm()
    a = world.invoke("a")
    world.commit()  # a is journaled
    b = world.invoke("b")  # queued behind a
    world.reply("A")
    world.fail_commit()  # a's outcome and b's enqueue are lost
    assert a.code == Code.STORAGE_FULL and b.code == Code.STORAGE_FULL
    world.die()
    assert world.eng.current is None and world.eng.pending_count == 0


def test_a_refused_early_call_during_its_retry_backoff(world: World) -> None:
    world.warm()
    a = world.invoke("a")
    world.crash()
    assert world.status is AgentStatus.RETRYING
    world.fail_commit()
    assert a.code == Code.STORAGE_FULL
    assert world.sim.armed(Timer.RETRY) is None
    assert world.eng.current is None
    assert world.status is AgentStatus.SUSPENDED
    assert len(world.sim.spawns) == 1


def test_a_refused_early_call_whose_worker_died_unreaped(world: World) -> None:
    world.warm()
    a = world.invoke("a")
    world.crash(reap=False)
    world.fail_commit()
    assert a.code == Code.STORAGE_FULL
    world.reap()
    assert world.eng.current is None and world.eng.retry_count == 0
    assert len(world.sim.spawns) == 1


def test_an_early_call_failing_its_enqueue_write(world: World) -> None:
    world.warm()
    world.store.fail_next_write()
    a = world.invoke("a")
    assert a.code == Code.STORAGE_FULL
    assert world.sim.stops == [STOP_NOW]
    world.reply("ignored")
    world.die()
    assert world.eng.current is None
