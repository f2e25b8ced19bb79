"""cancel-invocation (DESIGN.md §1, Cancel): pending -> canceled; running ->
TOO_LATE "has already started"; finished -> TOO_LATE "already completed";
already canceled -> success; unknown -> NOT_FOUND. A cancel takes effect
as it commits: its callers are told then, and a cancel whose commit fails
leaves the invocation pending, in its place."""

from __future__ import annotations

import pytest

from golemd.engine.effects import Timer
from golemd.model.errors import Code, GolemError
from tests.engine.harness import World


def cancel_error(world: World, key: str) -> GolemError:
    with pytest.raises(GolemError) as info:
        world.cancel(key)
    return info.value


def test_cancel_pending_answers_its_callers_canceled(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    b2 = world.invoke("b")  # a second caller attached to the same key
    world.commit()
    world.cancel("b")
    assert not b.answered and not b2.answered  # not before the cancel commits
    world.commit()
    assert b.code == Code.CANCELED and b2.code == Code.CANCELED
    assert "was canceled" in b.error.message


def test_cancel_pending_is_journaled(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    world.commit()
    world.cancel("b")
    assert world.store.row(world.default, "b", committed=False)["status"] == "canceled"
    world.commit()
    row = world.store.row(world.default, "b")
    assert row["status"] == "canceled" and row["finished_at"] == world.clock()


def test_a_canceled_invocation_never_runs(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    world.invoke("c")
    world.commit()
    world.cancel("b")
    world.ready()
    world.reply()
    assert world.sim.sent == ["a"]  # c waits for the cancel's commit: were it to fail, b goes first
    world.commit()
    world.reply()
    assert world.sim.sent == ["a", "c"]
    assert world.eng.pending_count == 0


def test_cancel_takes_it_out_of_the_pending_count(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    world.commit()
    assert world.eng.pending_count == 1
    world.cancel("b")
    assert world.eng.pending_count == 0
    world.commit()
    assert "b" not in world.eng.queue.active


def test_cancel_a_trigger_before_its_enqueue_commits(world: World) -> None:
    t = world.trigger("t")
    world.cancel("t")
    world.commit()
    assert t.value == {"idempotency_key": "t", "status": "pending"}
    assert world.eng.current is None and world.sim.spawns == []
    assert world.journaled_status("t") == "canceled"


def test_cancel_the_head_before_it_is_journaled_lets_the_next_start(world: World) -> None:
    world.invoke("a")
    world.cancel("a")
    world.invoke("b")
    world.commit()
    assert world.eng.current.key == "b"


def test_cancel_scheduled(world: World) -> None:
    s = world.invoke("s", schedule_at=world.clock() + 10)
    world.commit()
    assert world.sim.armed(Timer.SCHEDULE) == 10
    world.cancel("s")
    assert world.sim.armed(Timer.SCHEDULE) is None
    assert world.eng.pending_count == 0
    world.commit()
    assert s.code == Code.CANCELED
    assert world.journaled_status("s") == "canceled"


def test_cancel_one_scheduled_rearms_for_the_next(world: World) -> None:
    now = world.clock()
    world.invoke("s1", schedule_at=now + 10)
    world.invoke("s2", schedule_at=now + 20)
    world.commit()
    world.cancel("s1")
    assert world.sim.armed(Timer.SCHEDULE) == 20
    world.advance(20)
    assert world.eng.current.key == "s2"


def test_cancel_running_is_too_late(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    err = cancel_error(world, "a")
    assert err.code == Code.TOO_LATE and "has already started" in err.message
    assert not a.answered
    world.reply(1)
    world.commit()
    assert a.value == 1


def test_cancel_while_starting_is_too_late(world: World) -> None:
    world.invoke("a")
    world.commit()  # started: its worker is being built
    assert cancel_error(world, "a").code == Code.TOO_LATE


def test_cancel_changes_nothing_when_too_late(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.ready()
    writes = len(world.store.writes)
    cancel_error(world, "a")
    assert len(world.store.writes) == writes


def test_cancel_completed_is_too_late(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.ready()
    world.reply()
    world.commit()
    err = cancel_error(world, "a")
    assert err.code == Code.TOO_LATE and "already completed" in err.message


def test_cancel_failed_is_too_late(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.ready()
    world.raise_()
    world.commit()
    err = cancel_error(world, "a")
    assert err.code == Code.TOO_LATE and "already completed" in err.message


def test_cancel_unknown_key_is_not_found(world: World) -> None:
    assert cancel_error(world, "nope").code == Code.NOT_FOUND


def test_second_cancel_succeeds(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.cancel("b")
    world.cancel("b")  # in the store's open transaction
    world.commit()
    world.cancel("b")  # committed
    assert len(b.answers) == 1


def test_cancel_an_unsaved_outcome_marks_it_canceled(world: World) -> None:
    """An invocation that ran but whose outcome's commit failed stays pending
    in the journal (it would run again after a restart): cancel marks it."""
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.reply()
    world.fail_commit()
    assert a.code == Code.STORAGE_FULL
    assert world.journaled_status("a") == "pending"
    world.cancel("a")
    world.commit()
    assert world.journaled_status("a") == "canceled"


def test_cancel_that_cannot_be_written_changes_nothing(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.store.fail_next_write()
    with pytest.raises(GolemError) as info:
        world.cancel("b")
    assert info.value.code == Code.STORAGE_FULL
    assert not b.answered
    assert "b" in world.eng.queue.active
    world.ready()
    world.reply()
    world.reply("b ran")
    world.commit()
    assert b.value == "b ran"


def test_a_cancel_whose_commit_fails_is_not_told_as_done(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.cancel("b")
    world.fail_commit()
    world.commit()
    # Not told CANCELED (its cancel never became durable): still pending, and it runs.
    assert not b.answered and world.journaled_status("b") == "pending"
    world.ready()
    world.reply()
    world.reply("b ran")
    world.commit()
    assert b.value == "b ran"


def test_a_cancel_whose_commit_fails_leaves_it_in_its_place(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    c = world.invoke("c")
    world.commit()
    world.cancel("b")
    assert [i.key for i in world.eng.queue.fifo] == ["c"]  # it cannot start meanwhile
    world.fail_commit()
    assert not b.answered
    assert [i.key for i in world.eng.queue.fifo] == ["b", "c"] and world.eng.pending_count == 2
    assert world.journaled_status("b") == "pending"
    world.ready()
    world.reply()
    world.reply("b ran")
    world.reply("c ran")
    world.commit()
    assert world.sim.sent == ["a", "b", "c"]
    assert b.value == "b ran" and c.value == "c ran"
    assert world.journaled_status("b") == "completed"


def test_a_cancel_whose_commit_fails_can_be_asked_again(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.cancel("b")
    world.fail_commit()
    world.cancel("b")
    world.commit()
    assert b.code == Code.CANCELED
    assert world.journaled_status("b") == "canceled"


def test_a_second_cancel_before_the_commit_writes_nothing_more(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.cancel("b")
    writes = len(world.store.writes)
    world.cancel("b")  # success: it awaits the same commit
    assert len(world.store.writes) == writes
    world.commit()
    assert len(b.answers) == 1 and b.code == Code.CANCELED


def test_a_caller_of_the_key_before_the_cancel_commits_is_told_with_the_others(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.cancel("b")
    again = world.invoke("b")  # attached: it is not canceled yet
    world.commit()
    assert b.code == Code.CANCELED and again.code == Code.CANCELED


def test_a_scheduled_cancel_whose_commit_fails_stays_scheduled(world: World) -> None:
    s = world.invoke("s", schedule_at=world.clock() + 10)
    world.commit()
    world.cancel("s")
    assert world.sim.armed(Timer.SCHEDULE) is None
    world.fail_commit()
    assert world.sim.armed(Timer.SCHEDULE) == 10 and world.eng.pending_count == 1
    world.advance(10)
    assert world.eng.current is not None and world.eng.current.key == "s"
    world.ready()
    world.reply("s ran")
    world.commit()
    assert s.value == "s ran"


def test_a_cancel_failing_with_the_enqueue_it_follows_refuses_the_invocation(world: World) -> None:
    world.invoke("a")
    world.commit()
    b = world.invoke("b")
    world.cancel("b")
    world.fail_commit()
    assert b.code == Code.STORAGE_FULL
    assert "b" not in world.eng.queue.active and world.eng.pending_count == 0
    assert world.journaled_status("b") is None


def test_a_cancel_undone_by_a_failed_commit_runs_from_the_saved_state(world: World) -> None:
    """a's outcome and b's cancel are lost together: b, back in the queue,
    goes to the worker that holds a's lost state, so its reply must not count."""
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.cancel("b")
    world.reply("A")  # nothing queued behind a now
    world.fail_commit()
    world.reply("B")  # computed on a's lost state
    world.die()
    world.ready()
    world.reply("B again")
    world.commit()
    assert b.value == "B again"
    assert world.saved_state() == ["b"]


def test_a_cancel_then_delete_answers_canceled_at_the_commit(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.cancel("b")
    world.delete()
    assert not b.answered
    world.commit()
    assert b.code == Code.CANCELED


def test_a_cancel_whose_commit_fails_on_a_deleted_agent_answers_canceled(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.cancel("b")
    world.delete()
    world.fail_commit()
    assert b.code == Code.CANCELED  # the agent is gone: it never runs


def test_a_cancel_whose_commit_fails_on_a_failed_agent_fails_it_too(world: World) -> None:
    a = world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.cancel("b")
    world.constructor_fails()
    world.fail_commit()
    assert a.code == Code.STORAGE_FULL and not b.answered
    world.commit()
    assert b.code == Code.AGENT_FAILED
    assert world.journaled_status("b") == "failed"
