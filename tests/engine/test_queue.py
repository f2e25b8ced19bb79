"""The pending queue: FIFO, one at a time, nothing before its enqueue commits,
scheduled invocations released when due."""

from __future__ import annotations

from golemd.engine.effects import Send, Spawn, Timer
from golemd.model.states import AgentStatus
from golemd.model.states import InvocationStatus as S
from tests.engine.harness import World


def test_first_invocation_spawns_a_worker_from_the_constructor(world: World) -> None:
    world.invoke("a")
    world.commit()
    assert world.sim.spawns == [None]
    assert world.status is AgentStatus.RUNNING


def test_the_call_is_sent_once_the_worker_is_ready(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.spawned()
    assert world.sim.sent == []
    world.ready()
    assert world.sim.sent == ["a"]


def test_a_call_is_answered_with_its_result(world: World) -> None:
    c = world.invoke("a")
    world.commit()
    world.ready()
    world.reply(41)
    world.commit()
    assert c.value == 41


def test_nothing_starts_before_its_enqueue_is_journaled(world: World) -> None:
    world.invoke("a")
    assert world.sim.spawns == []
    assert world.eng.current is None
    assert world.eng.pending_count == 1
    world.commit()
    assert world.eng.current is not None and world.eng.current.key == "a"


def test_invocations_start_in_arrival_order(world: World) -> None:
    callers = [world.invoke(k) for k in ("a", "b", "c", "d")]
    world.commit()
    world.ready()
    for i, _ in enumerate(callers):
        world.reply(i)
    world.commit()
    assert world.sim.sent == ["a", "b", "c", "d"]
    assert [c.value for c in callers] == [0, 1, 2, 3]


def test_fifo_holds_across_commits(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.invoke("b")
    world.invoke("c")
    world.ready()
    world.commit()
    world.reply()
    world.reply()
    world.invoke("d")
    world.commit()
    world.reply()
    world.reply()
    assert world.sim.sent == ["a", "b", "c", "d"]


def test_one_at_a_time(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    world.commit()
    world.ready()
    assert world.sim.sent == ["a"]
    assert world.eng.pending_count == 1
    world.reply()
    assert world.sim.sent == ["a", "b"]
    assert world.eng.pending_count == 0


def test_the_next_call_goes_out_before_the_previous_outcome_commits(world: World) -> None:
    a = world.invoke("a")
    world.invoke("b")
    world.commit()
    world.ready()
    world.reply(1)
    assert world.sim.sent == ["a", "b"]
    assert not a.answered  # its outcome is not committed yet
    world.commit()
    assert a.value == 1


def test_an_unjournaled_head_blocks_the_queue_behind_it(world: World) -> None:
    world.invoke("a")
    world.commit()
    world.ready()
    world.invoke("b")  # not committed
    world.reply()
    assert world.sim.sent == ["a"]
    assert world.eng.current is None
    world.commit()
    assert world.sim.sent == ["a", "b"]


def test_the_queue_counts_pending_not_running(world: World) -> None:
    for k in "abc":
        world.invoke(k)
    assert world.eng.pending_count == 3
    world.commit()
    assert world.eng.pending_count == 2
    assert [i["idempotency_key"] for i in world.eng.invocations()] == ["a", "b", "c"]
    assert world.eng.invocations()[0]["status"] == "running"


def test_the_worker_is_reused_across_calls(world: World) -> None:
    world.warm()
    world.invoke("a")
    world.commit()
    world.reply()
    world.commit()
    assert len(world.sim.spawns) == 1


def test_agents_run_in_parallel(world: World) -> None:
    other = 'Counter("c2")'
    a = world.invoke("a")
    b = world.invoke("b", agent=other)
    world.commit()
    world.ready()
    world.sim_of(other).ready()
    assert world.sim.sent == ["a"] and world.sim_of(other).sent == ["b"]
    world.sim_of(other).reply("B")
    world.reply("A")
    world.commit()
    assert (a.value, b.value) == ("A", "B")


def test_each_agent_keeps_its_own_keys(world: World) -> None:
    other = 'Counter("c2")'
    a = world.invoke("k", 1)
    b = world.invoke("k", 2, agent=other)
    world.commit()
    world.ready()
    world.sim_of(other).ready()
    world.reply(1)
    world.sim_of(other).reply(2)
    world.commit()
    assert (a.value, b.value) == (1, 2)


# -- scheduled invocations -------------------------------------------------------


def test_a_scheduled_invocation_waits_for_its_time(world: World) -> None:
    c = world.invoke("s", schedule_at=world.clock() + 10)
    world.commit()
    assert world.eng.current is None
    assert world.eng.queue.active["s"].status == S.SCHEDULED
    assert world.sim.armed(Timer.SCHEDULE) == 10
    assert world.eng.pending_count == 1
    world.advance(9.9)
    assert world.eng.current is None
    world.advance(0.1)
    assert world.eng.current is not None and world.eng.current.key == "s"
    world.ready()
    world.reply("late")
    world.commit()
    assert c.value == "late"


def test_a_released_invocation_takes_a_new_seq_and_is_journaled_pending(world: World) -> None:
    world.invoke("s", schedule_at=world.clock() + 5)
    world.invoke("a")
    world.commit()
    seq_before = world.eng.queue.active["s"].seq
    world.ready()
    world.fire(Timer.SCHEDULE)
    inv = world.eng.queue.active["s"]
    assert inv.seq > seq_before
    assert inv.seq == world.eng.next_seq - 1
    assert world.store.commit_wanted
    world.commit()
    row = world.store.row(world.default, "s")
    assert row["status"] == "pending" and row["seq"] == inv.seq


def test_a_released_invocation_joins_the_back_of_the_queue(world: World) -> None:
    world.invoke("s", schedule_at=world.clock() + 5)
    world.invoke("a")
    world.invoke("b")
    world.commit()
    world.ready()  # a runs
    world.fire(Timer.SCHEDULE)
    world.invoke("c")
    world.commit()
    for _ in range(4):
        world.reply()
    assert world.sim.sent == ["a", "b", "s", "c"]


def test_scheduled_invocations_are_released_in_due_order(world: World) -> None:
    now = world.clock()
    world.invoke("late", schedule_at=now + 20)
    world.invoke("soon", schedule_at=now + 10)
    world.commit()
    assert world.sim.armed(Timer.SCHEDULE) == 10
    world.advance(10)
    assert world.eng.current.key == "soon"
    assert world.sim.armed(Timer.SCHEDULE) == 10
    world.advance(10)
    world.ready()
    world.reply()
    world.reply()
    assert world.sim.sent == ["soon", "late"]


def test_a_schedule_in_the_past_is_pending_at_once(world: World) -> None:
    world.invoke("p", schedule_at=world.clock() - 1)
    world.commit()
    assert world.eng.current is not None and world.eng.current.key == "p"


def test_a_scheduled_invocation_is_never_started_early(world: World) -> None:
    world.warm()
    world.invoke("s", schedule_at=world.clock() + 5)
    assert world.sim.sent == ["warm0"]
    world.commit()
    assert world.eng.current is None


def test_an_early_timer_fire_releases_nothing(world: World) -> None:
    world.invoke("s", schedule_at=world.clock() + 5)
    world.commit()
    world.eng.timer_fired(Timer.SCHEDULE)  # a timer firing too soon
    world.sim.apply()
    assert world.eng.current is None
    assert world.sim.armed(Timer.SCHEDULE) == 5


def test_no_duplicate_spawn_while_one_is_starting(world: World) -> None:
    world.invoke("a")
    world.invoke("b")
    world.commit()
    world.invoke("c")
    world.commit()
    assert sum(isinstance(e, Spawn) for e in world.sim.effects) == 1
    world.spawned()
    world.invoke("d")
    world.commit()
    assert sum(isinstance(e, Spawn) for e in world.sim.effects) == 1
    assert not any(isinstance(e, Send) for e in world.sim.effects)
