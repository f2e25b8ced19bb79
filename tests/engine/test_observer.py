"""What the engine tells an observer (golemd.engine.observer): each outcome
once, after its commit and never for one whose commit failed; a first start
once; worker starts, deaths by themselves and retries."""

from __future__ import annotations

from typing import Any

from golemd.engine.effects import Timer
from golemd.model.invocation import Invocation
from tests.engine.harness import World


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def started(self, agent: str, type_name: str, inv: Invocation) -> None:
        assert inv.started_at is not None
        self.seen.append(("started", type_name, inv.key))

    def ended(self, agent: str, type_name: str, inv: Invocation, outcome: str,
              finished_at: float, committed_at: float) -> None:
        assert committed_at >= finished_at
        self.seen.append(("ended", type_name, inv.key, outcome))

    def worker_started(self, type_name: str) -> None:
        self.seen.append(("worker_started", type_name))

    def worker_died(self, type_name: str) -> None:
        self.seen.append(("worker_died", type_name))

    def retried(self, type_name: str) -> None:
        self.seen.append(("retried", type_name))


def watch(world: World) -> Recorder:
    rec = Recorder()
    world.ctx.observer = rec
    return rec


def kinds(rec: Recorder, kind: str) -> list[tuple[Any, ...]]:
    return [s for s in rec.seen if s[0] == kind]


def test_an_outcome_is_told_after_its_commit(world: World) -> None:
    rec = watch(world)
    a = world.invoke("a")
    world.commit()
    world.ready()
    world.reply(1)
    assert kinds(rec, "ended") == []
    world.commit()
    assert a.value == 1
    t = world.default.split("(")[0]
    # it begins, then a worker is brought up for it
    assert rec.seen == [("started", t, "a"), ("worker_started", t), ("ended", t, "a", "completed")]


def test_a_failed_commit_tells_no_outcome(world: World) -> None:
    rec = watch(world)
    world.invoke("a")
    world.commit()
    world.ready()
    world.reply(1)
    world.fail_commit()
    assert kinds(rec, "ended") == []


def test_a_failure_and_a_cancel_are_outcomes(world: World) -> None:
    rec = watch(world)
    world.invoke("a")
    world.invoke("b")
    world.commit()
    world.ready()
    world.cancel("b")
    world.fail_call()
    world.commit()
    outcomes = {s[2]: s[3] for s in kinds(rec, "ended")}
    assert outcomes == {"a": "failed", "b": "canceled"}
    assert [s[2] for s in kinds(rec, "started")] == ["a"]  # b never started


def test_a_death_and_its_retry(world: World) -> None:
    rec = watch(world)
    world.invoke("a")
    world.commit()
    world.ready()
    world.crash()
    assert len(kinds(rec, "worker_died")) == 1
    assert len(kinds(rec, "retried")) == 1
    world.fire(Timer.RETRY)
    world.ready()
    world.reply(1)
    world.commit()
    assert len(kinds(rec, "worker_started")) == 2
    assert [s[2] for s in kinds(rec, "started")] == ["a"]  # a retry is not a second first start
    assert [s[3] for s in kinds(rec, "ended")] == ["completed"]


def test_a_stop_golemd_asked_for_is_no_death(world: World) -> None:
    rec = watch(world)
    world.invoke("a")
    world.commit()
    world.ready()
    world.reply(1)
    world.commit()
    world.invoke("b")
    world.commit()
    world.interrupt()
    world.die()
    assert kinds(rec, "worker_died") == []
    assert kinds(rec, "retried") == []
