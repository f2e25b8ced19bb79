"""Every outcome is written and committed before any caller hears of it; a
commit that fails answers the caller with its error and drops the state the
worker holds, which the store does not."""

from __future__ import annotations

from golemd.engine.effects import STOP_NOW, Timer
from golemd.model.errors import Code
from golemd.model.states import AgentStatus
from tests.engine.harness import World, encode_state


def run_one(world: World, key: str = "a", value: object = 1) -> None:
    world.invoke(key)
    world.commit()
    if world.sim.worker.phase != "ready":
        world.ready()
    world.reply(value)


def test_caller_is_answered_only_after_the_commit(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.reply(7)
    assert not a.answered
    world.commit()
    assert a.value == 7


def test_the_outcome_is_journaled(world: World) -> None:
    run_one(world, "a", {"x": [1, 2]})
    world.commit()
    row = world.store.row(world.default, "a")
    assert row["status"] == "completed"
    assert world.store.outcome(world.default, "a") == {"result": {"x": [1, 2]}}
    assert row["started_at"] is not None and row["finished_at"] is not None


def test_a_failed_outcome_is_journaled(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.ready()
    world.raise_("KeyError", "'x'")
    world.commit()
    assert world.journaled_status("a") == "failed"
    assert world.store.outcome(world.default, "a")["error"]["code"] == "INVOCATION_FAILED"


def test_the_state_is_saved_with_the_outcome(world: World) -> None:
    run_one(world, "a")
    assert world.saved_state() == []
    world.commit()
    assert world.saved_state() == ["a"]
    row = world.store.agent_row(world.default)
    assert row["completed_count"] == 1


def agent_row_writes(world: World) -> int:
    return sum(w[0] == "update_agent" for w in world.store.writes)


def test_a_completion_leaves_the_agent_row_to_be_written_later_once(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    world.commit()
    world.ready()
    world.reply()
    world.reply()
    before = agent_row_writes(world)
    world.commit()
    assert agent_row_writes(world) == before  # the outcomes' commit has no agent row in it
    assert world.saved_state() == ["a", "b"]  # rolled forward over the invocations' rows
    stale = world.store.committed.agents[world.default]
    assert "completed_count" not in stale and "snapshot" not in stale
    world.store.flush_later()
    assert agent_row_writes(world) == before + 1
    written = world.store.committed.agents[world.default]
    assert (written["completed_count"], written["fin_upto"]) == (2, 2)
    assert written["snapshot"] == encode_state(["a", "b"])
    assert world.store.agent_row(world.default) == written  # nothing left to roll forward


def test_a_failure_writes_the_agent_row_with_its_outcome(world: World) -> None:
    run_one(world, "a")
    world.commit()
    world.invoke("b")
    world.commit()
    before = agent_row_writes(world)
    world.raise_("KeyError", "'x'")
    world.commit()
    assert agent_row_writes(world) == before + 1
    row = world.store.committed.agents[world.default]
    assert (row["completed_count"], row["failed_count"], row["fin_upto"]) == (1, 1, 2)
    assert row["last_error"] == "INVOCATION_FAILED: KeyError: 'x'"
    assert row["snapshot"] == encode_state(["a"])  # the completion's, taken in with it


def test_a_state_too_large_to_keep_per_invocation_is_written_to_the_agent_row_at_once(make_world) -> None:
    world = make_world(revert_snapshot_bytes=0)
    run_one(world, "a")
    before = agent_row_writes(world)
    world.commit()
    assert agent_row_writes(world) == before + 1
    assert world.store.committed.agents[world.default]["snapshot"] == encode_state(["a"])
    assert world.store.row(world.default, "a")["fin"] is None


def test_after_a_failed_commit_the_state_goes_back_to_the_one_rolled_forward(world: World) -> None:
    run_one(world, "a")
    world.commit()  # a's state is in its invocation's row only
    world.invoke("b")
    world.commit()
    world.reply()
    world.store.fail_next_commit()
    world.commit()
    assert world.eng.snapshot == encode_state(["a"])
    world.store.flush_later()
    # The agent's row takes that state with the finish numbers it covers.
    assert world.store.committed.agents[world.default]["snapshot"] == encode_state(["a"])
    assert world.saved_state() == ["a"]


def test_a_rolled_back_agent_row_is_written_whole_the_next_time(world: World) -> None:
    run_one(world, "a")
    world.commit()
    world.store.fail_next_commit()
    assert world.store.flush_later() is not None  # the agent's row is lost with that commit
    world.invoke("b")
    world.commit()
    world.raise_()
    world.commit()  # a failure writes the row at once, taking in a's finish number
    row = world.store.committed.agents[world.default]
    assert (row["completed_count"], row["failed_count"], row["fin_upto"]) == (1, 1, 2)
    assert row["snapshot"] == encode_state(["a"])  # a's state, not only in a's row now
    assert world.saved_state() == ["a"]


def test_a_raised_call_leaves_the_saved_state_as_it_was(world: World) -> None:
    run_one(world, "a")
    world.commit()
    world.invoke("b")
    world.commit()
    world.raise_()
    world.commit()
    assert world.saved_state() == ["a"]


def test_commit_failure_answers_the_caller_with_its_error(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.reply(7)
    world.fail_commit()
    assert a.code == Code.STORAGE_FULL


def test_commit_failure_of_an_error_outcome_answers_storage_full(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.raise_()
    world.fail_commit()
    assert a.code == Code.STORAGE_FULL


def test_commit_failure_stops_the_worker(world: World) -> None:
    """drop_unsaved_state: the worker holds a state the store lost."""
    run_one(world)
    world.fail_commit()
    assert world.sim.stops == [STOP_NOW]
    world.die()
    assert world.status is AgentStatus.SUSPENDED


def test_after_a_failed_commit_the_next_call_starts_from_the_saved_state(world: World) -> None:
    run_one(world, "a")
    world.commit()
    run_one(world, "b")
    world.fail_commit()
    world.die()
    world.invoke("c")
    world.commit()
    assert world.sim.spawns[-1] == encode_state(["a"])
    world.ready()
    world.reply()
    world.commit()
    assert world.saved_state() == ["a", "c"]


def test_a_call_sent_before_a_failed_commit_runs_again_from_the_saved_state(world: World) -> None:
    a = world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.reply("A")  # b goes out at once, on a state holding a
    assert world.call.key == "b"
    world.fail_commit()  # a's outcome is lost
    assert a.code == Code.STORAGE_FULL
    assert world.sim.stops == [STOP_NOW]
    world.die()
    assert world.sim.spawns == [None, None]  # from the saved state (none)
    assert world.status is AgentStatus.RUNNING
    world.ready()
    assert world.sim.sent == ["a", "b", "b"]
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.saved_state() == ["b"]
    assert world.eng.retry_count == 0


def test_a_reply_from_a_worker_holding_an_unsaved_state_is_ignored(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.reply("A")
    world.fail_commit()
    world.reply("B from the dropped state")  # it was in the pipe before the kill
    world.commit()
    assert not b.answered
    world.die()
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.saved_state() == ["b"]


def test_a_failed_commit_of_an_enqueue_alone_leaves_the_running_call_alone(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    b = world.invoke("b")
    world.fail_commit()
    assert b.code == Code.STORAGE_FULL
    assert world.sim.stops == []
    assert world.eng.pending_count == 0
    world.reply("A")
    world.commit()
    assert a.value == "A"
    assert world.sim.sent == ["a"]


def test_a_refused_trigger_is_told_and_never_runs(world: World) -> None:
    t = world.trigger("t")
    world.fail_commit()
    assert t.code == Code.STORAGE_FULL
    assert world.sim.spawns == [] and world.eng.current is None
    assert world.store.row(world.default, "t") is None


def test_a_trigger_is_acknowledged_at_its_enqueue_commit(world: World) -> None:
    t = world.trigger("t")
    assert not t.answered
    world.commit()
    assert t.value == {"idempotency_key": "t", "status": "pending"}


def test_a_failed_outcome_write_answers_storage_full(world: World) -> None:
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.store.fail_next_write()
    world.reply()
    assert a.code == Code.STORAGE_FULL
    assert world.sim.stops == [STOP_NOW]


def test_non_durable_agent_starts_fresh_every_time(make_world) -> None:
    world = make_world(durable=False, idle_timeout=0)
    run_one(world, "a")
    world.commit()
    world.invoke("b")
    world.commit()
    world.crash()
    world.fire(Timer.RETRY)
    world.ready()
    world.reply()
    world.commit()
    assert world.sim.spawns == [None, None]
    assert world.saved_state() == []
    assert "snapshot" not in world.store.committed.agents[world.default]


def test_counts_and_last_error(world: World) -> None:
    run_one(world, "a")
    world.invoke("b")
    world.commit()
    world.raise_("KeyError", "'x'")
    world.commit()
    eng = world.eng
    assert (eng.completed_count, eng.failed_count) == (1, 1)
    assert eng.last_error == "INVOCATION_FAILED: KeyError: 'x'"
    row = world.store.committed.agents[world.default]
    assert (row["completed_count"], row["failed_count"]) == (1, 1)
    assert row["last_error"] == eng.last_error


def test_retention_prunes_every_thousandth_completion(make_world) -> None:
    world = make_world(idle_timeout=0, retention_count=10, retention_seconds=0)
    world.eng.completed_count = 998
    run_one(world, "a")
    world.commit()
    assert not any(w[0] == "prune" for w in world.store.writes)
    world.invoke("b")
    world.commit()
    world.reply()
    assert any(w[0] == "prune" for w in world.store.writes)


def test_a_call_begun_after_a_failed_commit_is_no_crash(world: World) -> None:
    world.warm()
    run_one(world, "a")
    world.fail_commit()  # the worker is stopped: it holds a's unsaved state
    b = world.invoke("b")
    world.commit()  # b begins, waiting for that worker to be gone
    world.die()
    assert world.status is AgentStatus.RUNNING
    assert world.eng.retry_count == 0
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"


def test_the_call_after_a_failed_outcome_write_is_no_crash(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.store.fail_next_write()
    world.reply("A")  # its outcome cannot be written: the worker is stopped, b begins
    world.die()
    assert world.status is AgentStatus.RUNNING
    assert world.eng.retry_count == 0
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"


def test_a_reply_racing_a_stop_after_a_failed_commit_does_not_count(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.reply("A")  # b goes out at once, on a state holding a
    world.interrupt()  # b's worker is being stopped...
    world.fail_commit()  # ...when a's outcome is lost
    world.reply("B")  # b's reply was in the pipe: computed on a's lost state
    world.commit()
    assert "a" not in world.saved_state()
    assert not b.answered  # its reply, built on the lost state, did not count


def test_a_call_whose_stopped_worker_held_a_lost_outcome_runs_again_from_the_saved_state(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.reply("A")
    world.interrupt()
    world.fail_commit()
    world.reply("B")  # does not count: the worker is killed now
    assert world.sim.worker is not None and world.sim.worker.stopped == STOP_NOW
    world.die()
    assert b.code == Code.INTERRUPTED
    assert [i.key for i in world.eng.queue.fifo] == ["b"]
    world.resume()
    world.ready()
    assert world.sim.spawns[-1] is None  # from the last saved state: a's was lost
    world.reply("B again")
    world.commit()
    assert world.saved_state() == ["b"]
    assert world.journaled_status("b") == "completed"


def test_a_call_whose_worker_died_before_the_failed_commit_is_retried_as_a_crash(world: World) -> None:
    world.invoke("a")
    b = world.invoke("b")
    world.commit()
    world.ready()
    world.reply("A")  # b goes out at once
    world.crash(reap=False)  # b's worker dies by itself: no reply of it can come
    world.fail_commit()  # a's outcome is lost
    world.reap()
    assert world.status is AgentStatus.RETRYING  # b's crash, not a stop of ours
    assert world.eng.current is not None and world.eng.current.attempts == 1
    world.fire(Timer.RETRY)
    world.ready()
    world.reply("B")
    world.commit()
    assert b.value == "B"
    assert world.saved_state() == ["b"]


def test_an_outcome_whose_commit_failed_is_not_counted(world: World) -> None:
    """Found by the model test (test_model.py, its completed_count checks).
    a's outcome is lost with its commit (its caller hears STORAGE_FULL, and
    the journal has it pending: it runs again after a restart), so a is not
    completed: neither the engine nor the journal may count it, and the
    journal must read the same before and after its agent row is written."""
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.reply()
    world.fail_commit()
    assert a.code == Code.STORAGE_FULL
    assert world.eng.completed_count == 0
    world.die()  # stopped: it holds a state the journal lost
    b = world.invoke("b")
    world.commit()
    world.ready()  # a new worker, from the saved state
    world.reply()
    world.commit()
    assert b.answered and world.eng.completed_count == 1
    assert world.store.agent_row(world.default)["completed_count"] == 1  # rolled forward over b
    world.store.flush_later()
    assert world.store.agent_row(world.default)["completed_count"] == 1  # written: the same
    assert world.saved_state() == ["b"]


def test_a_failure_whose_commit_failed_is_not_counted(world: World) -> None:
    run_one(world, "a")
    world.commit()
    world.invoke("b")
    world.commit()
    world.raise_()
    world.fail_commit()
    assert world.eng.failed_count == 0
    world.die()
    world.invoke("c")
    world.commit()
    world.ready()
    world.raise_()
    world.commit()
    row = world.store.agent_row(world.default)
    assert (row["completed_count"], row["failed_count"]) == (1, 1)


def test_a_failure_whose_commit_failed_leaves_the_last_error_as_committed(world: World) -> None:
    """Its error is no outcome either: the agent's last_error is the one the
    journal holds, before and after a restart."""
    world.invoke("a")
    world.commit()
    world.ready()
    world.raise_("KeyError", "'x'")
    world.commit()
    world.invoke("b")
    world.commit()
    world.raise_("ValueError", "lost")
    world.fail_commit()
    assert world.eng.last_error == "INVOCATION_FAILED: KeyError: 'x'"
    world.die()
    world.invoke("c")
    world.commit()
    world.ready()
    world.reply()
    world.commit()
    world.store.flush_later()
    assert world.store.agent_row(world.default)["last_error"] == "INVOCATION_FAILED: KeyError: 'x'"
