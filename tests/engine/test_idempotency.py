"""Idempotency keys, through the engine's in-memory half (queue.active) and
the journal's rows, as the supervisor's admission reads them."""

from __future__ import annotations

from golemd.model.errors import Code
from tests.engine.harness import World


def test_same_key_while_pending_attaches(world: World) -> None:
    a1 = world.invoke("k", 1)
    a2 = world.invoke("k", 1)
    world.commit()
    world.ready()
    world.reply("once")
    world.commit()
    assert a1.value == a2.value == "once"
    assert world.sim.sent == ["k"]


def test_same_key_while_running_attaches(world: World) -> None:
    a1 = world.invoke("k", 1)
    world.commit()
    world.ready()
    a2 = world.invoke("k", 1)
    world.reply("once")
    world.commit()
    assert a1.value == a2.value == "once"
    assert world.eng.completed_count == 1


def test_same_key_after_completion_returns_the_stored_outcome(world: World) -> None:
    world.invoke("k", 1)
    world.commit()
    world.ready()
    world.reply({"n": 1})
    world.commit()
    again = world.invoke("k", 1)
    assert again.value == {"n": 1}
    t = world.trigger("k", 1)
    assert t.value == {"idempotency_key": "k", "status": "completed", "result": {"n": 1}}
    assert world.sim.sent == ["k"]


def test_same_key_after_failure_returns_the_stored_error(world: World) -> None:
    world.invoke("k")
    world.commit()
    world.ready()
    world.raise_("KeyError", "'x'")
    world.commit()
    again = world.invoke("k")
    assert again.code == Code.INVOCATION_FAILED and again.error.message == "KeyError: 'x'"


def test_same_key_after_cancel_is_canceled(world: World) -> None:
    world.invoke("a")
    world.invoke("k")
    world.commit()
    world.cancel("k")
    world.commit()
    assert world.invoke("k").code == Code.CANCELED


def test_other_args_while_active_is_a_conflict(world: World) -> None:
    world.invoke("k", 1)
    c = world.invoke("k", 2)
    assert c.code == Code.IDEMPOTENCY_CONFLICT
    assert world.eng.pending_count == 1


def test_other_method_after_completion_is_a_conflict(world: World) -> None:
    world.invoke("k", 1)
    world.commit()
    world.ready()
    world.reply()
    world.commit()
    c = world.invoke("k", 1, method="decr")
    assert c.code == Code.IDEMPOTENCY_CONFLICT


def test_a_trigger_attached_to_a_pending_one_is_acked(world: World) -> None:
    world.invoke("k")
    world.commit()
    world.invoke("b")
    world.commit()
    t = world.trigger("b")
    assert t.value == {"idempotency_key": "b", "status": "pending"}
    t2 = world.trigger("k")
    assert t2.value == {"idempotency_key": "k", "status": "running"}


def test_an_unsaved_outcome_is_told_on_reuse(world: World) -> None:
    world.invoke("k")
    world.commit()
    world.ready()
    world.reply()
    world.fail_commit()
    assert world.invoke("k").code == Code.STORAGE_FULL


def test_a_refused_key_can_be_used_again(world: World) -> None:
    first = world.invoke("k")
    world.fail_commit()
    assert first.code == Code.STORAGE_FULL
    second = world.invoke("k")
    world.commit()
    world.ready()
    world.reply("ok")
    world.commit()
    assert second.value == "ok"


def test_an_interrupted_key_attaches_again(world: World) -> None:
    first = world.invoke("k")
    world.commit()
    world.ready()
    world.interrupt()
    world.die()
    again = world.invoke("k")
    world.resume()
    world.ready()
    world.reply("ok")
    world.commit()
    assert first.code == Code.INTERRUPTED and again.value == "ok"
