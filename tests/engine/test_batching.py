"""Batched calls (ctx.batch): queued calls are sent to the worker behind the
running one; each stays pending until the one before it replies, and a
cancel of one of them follows the drop protocol (docs/semantics.md,
"Batched calls"). The engine is driven by hand here, as golemd.driver.agent
drives it: the harness's Sim models one call at a time."""

from __future__ import annotations

from typing import Any

import pytest

from golemd.engine import control
from golemd.engine.agent import AgentEngine
from golemd.engine.context import EngineContext
from golemd.engine.effects import Effect, Send, Spawn, StopReason
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation
from golemd.model.states import AgentStatus
from golemd.model.states import InvocationStatus as S
from golemd.wire.codec import pack
from tests.engine.harness import FakeClock, FakeStore

AGENT = 'Counter("b")'


class Batch:
    def __init__(self, batch: int = 3) -> None:
        self.clock = FakeClock()
        self.store = FakeStore()
        self.ctx = EngineContext(clock=self.clock, batch=batch)
        self.eng = AgentEngine(self.ctx, self.store, AGENT, "Counter", durable=True)
        self.answers: dict[str, list[tuple[Any, GolemError | None]]] = {}
        self.sent: list[tuple[str, bool]] = []  # (key, ahead) of every Send, in order

    def take(self) -> list[Effect]:
        out = self.eng.take()
        self.sent += [(e.inv.key, e.ahead) for e in out if isinstance(e, Send)]
        return out

    def invoke(self, key: str) -> Invocation:
        eng = self.eng
        args_packed = pack(["inc", [key]])
        inv = Invocation(key=key, method="inc", args=[key], args_packed=args_packed, seq=eng.take_seq(),
                         created_at=self.clock(), status=S.PENDING, journaled=True)
        inv.rowid = self.store.enqueue_invocation(AGENT, key, inv.seq, "inc", args_packed, "pending",
                                                  self.clock(), None, None)
        self.answers[key] = []
        inv.waiters.append(lambda v, e, k=key: self.answers[k].append((v, e)))
        eng.enqueue(inv)
        return inv

    def start(self, key: str = "a") -> Invocation:
        """A first call, and its worker built: it is running."""
        inv = self.invoke(key)
        assert any(isinstance(e, Spawn) for e in self.take())
        self.eng.worker_spawned()
        self.eng.worker_ready()
        self.take()
        return inv

    def reply(self, inv: Invocation) -> None:
        self.eng.replied(inv, {"ok": True, "result": inv.key, "snapshot": pack([inv.key])})
        self.take()

    def ahead(self) -> list[str]:
        return [i.key for i in self.eng.queue.ahead]

    def fifo(self) -> list[str]:
        return [i.key for i in self.eng.queue.fifo]

    def current(self) -> str | None:
        cur = self.eng.current
        return cur.key if cur is not None else None


@pytest.fixture
def b() -> Batch:
    return Batch()


def test_queued_calls_go_ahead_up_to_the_batch(b: Batch) -> None:
    b.start("a")
    for key in "bcde":
        b.invoke(key)
    b.take()
    assert b.sent == [("a", False), ("b", True), ("c", True), ("d", True)]
    assert b.ahead() == ["b", "c", "d"] and b.fifo() == ["e"]
    # Still pending, and listed in the order they run.
    assert b.eng.pending_count == 4
    assert [i["idempotency_key"] for i in b.eng.invocations()] == list("abcde")
    assert [i["status"] for i in b.eng.invocations()] == ["running"] + ["pending"] * 4


def test_a_reply_starts_the_next_one_sent_and_tops_up(b: Batch) -> None:
    a = b.start("a")
    for key in "bcde":
        b.invoke(key)
    b.take()
    b.reply(a)
    assert b.current() == "b" and b.eng.current is not None and b.eng.current.status == S.RUNNING
    assert b.ahead() == ["c", "d", "e"] and b.sent[-1] == ("e", True)
    b.store.commit()
    assert b.answers["a"] == [("a", None)]


def test_nothing_goes_ahead_while_a_caller_streams(b: Batch) -> None:
    b.start("a")
    b.eng.listened = 1
    b.invoke("b")
    b.take()
    assert b.ahead() == [] and b.fifo() == ["b"]


def test_nothing_goes_ahead_with_batch_zero() -> None:
    z = Batch(batch=0)
    z.start("a")
    z.invoke("b")
    z.take()
    assert z.sent == [("a", False)] and z.fifo() == ["b"]


def test_a_cancel_the_drop_wins_cancels_it_and_sends_those_after_it_again(b: Batch) -> None:
    b.start("a")
    for key in "bcd":
        b.invoke(key)
    b.take()
    c = b.eng.queue.active["c"]
    b.eng.dropping(c)  # the driver writes the drop, reads the worker: nothing new
    b.eng.polled()
    assert c in b.eng.queue.ahead
    control.cancel(b.eng, "c")
    b.eng.drop_settled(c)
    b.take()
    assert b.ahead() == ["b"] and b.fifo() == ["d"]  # not again before the cancel commits
    assert b.store.row(AGENT, "c", committed=False)["status"] == "canceled"
    assert b.answers["c"] == []  # told once the cancel commits
    b.store.commit()
    b.take()
    assert b.answers["c"][0][1] is not None and b.answers["c"][0][1].code == Code.CANCELED
    assert b.ahead() == ["b", "d"] and b.sent[-1] == ("d", True)  # d again, behind b


def test_a_cancel_the_drop_wins_whose_commit_fails_goes_again_in_its_place(b: Batch) -> None:
    """As the driver does: the drop is settled once the cancel commits, so
    that nothing is sent again meanwhile."""
    b.start("a")
    for key in "bcde":
        b.invoke(key)
    b.take()
    b.store.commit()
    c = b.eng.queue.active["c"]
    b.eng.dropping(c)
    b.eng.polled()
    control.cancel(b.eng, "c")
    b.take()
    assert b.ahead() == ["b"] and b.fifo() == ["d", "e"]
    b.store.fail_next_commit()
    b.store.commit()
    b.eng.drop_settled(c)
    b.take()
    assert b.answers["c"] == [] and b.store.row(AGENT, "c")["status"] == "pending"
    assert b.ahead() == ["b", "c", "d"] and b.fifo() == ["e"] and b.eng.pending_count == 4
    assert b.sent[-2:] == [("c", True), ("d", True)]


def test_the_drop_loses_the_race_then_the_worker_drops_it_it_runs_first_again(b: Batch) -> None:
    a = b.start("a")
    for key in "bcd":
        b.invoke(key)
    b.take()
    bb = b.eng.queue.active["b"]
    b.eng.dropping(bb)
    b.reply(a)  # read while polling: b taken for started
    b.eng.polled()
    assert b.current() == "b"
    with pytest.raises(GolemError) as info:
        control.cancel(b.eng, "b")
    assert info.value.code == Code.TOO_LATE
    # The worker saw the drop first after all: b, c and d come back, b first.
    sent_before = len(b.sent)
    b.eng.dropped(bb)
    b.take()
    assert b.current() == "b" and b.sent[sent_before:] == [("b", False), ("c", True), ("d", True)]
    assert b.answers["b"] == []  # it runs: TOO_LATE held


def test_while_a_drop_is_unsettled_nothing_more_goes_ahead(b: Batch) -> None:
    a = b.start("a")
    for key in "bc":
        b.invoke(key)
    b.take()
    bb = b.eng.queue.active["b"]
    b.eng.dropping(bb)
    b.reply(a)
    b.eng.polled()  # b started (as far as we know): the drop may still win
    b.invoke("d")
    b.invoke("e")
    b.take()
    assert b.ahead() == ["c"] and b.fifo() == ["d", "e"]
    b.reply(bb)  # b ran: the worker ignored the drop, sending ahead resumes
    assert b.current() == "c" and b.ahead() == ["d", "e"]


def test_a_dropped_answer_read_while_polling_is_not_sent_again_then(b: Batch) -> None:
    b.start("a")
    for key in "bcd":
        b.invoke(key)
    b.take()
    c = b.eng.queue.active["c"]
    b.eng.dropping(c)
    sent_before = len(b.sent)
    b.eng.dropped(c)  # the worker answered the drop before our read ended
    b.take()
    assert b.sent[sent_before:] == []  # not sent again while the driver polls
    b.eng.polled()
    assert c not in b.eng.queue.ahead  # the driver then cancels it from the queue
    control.cancel(b.eng, "c")
    b.take()
    assert b.fifo() == ["d"] and b.ahead() == ["b"]  # d waits for the cancel's commit (cancels_pending)
    b.store.commit()
    b.take()
    assert b.fifo() == [] and b.ahead() == ["b", "d"] and b.sent[-1] == ("d", True)


def test_a_worker_death_puts_what_went_ahead_back_in_order(b: Batch) -> None:
    b.start("a")
    for key in "bcde":
        b.invoke(key)
    b.take()
    b.eng.worker_lost()
    b.eng.worker_exited("killed by SIGSEGV")
    b.take()
    assert b.current() == "a" and b.eng.status == AgentStatus.RETRYING
    assert b.fifo() == ["b", "c", "d", "e"] and b.ahead() == []
    assert all(i.status == S.PENDING for i in b.eng.queue.fifo)


def test_an_interrupt_puts_the_running_one_first_then_what_went_ahead(b: Batch) -> None:
    b.start("a")
    for key in "bc":
        b.invoke(key)
    b.take()
    control.interrupt(b.eng, recover=False)
    assert b.eng.stop_reason == StopReason.INTERRUPT
    b.eng.worker_lost()
    b.eng.worker_exited("killed by SIGTERM")
    b.take()
    assert b.current() is None and b.fifo() == ["a", "b", "c"]
    assert b.answers["a"][0][1] is not None and b.answers["a"][0][1].code == Code.INTERRUPTED


def test_unsend_takes_everything_back(b: Batch) -> None:
    b.start("a")
    for key in "bcd":
        b.invoke(key)
    b.take()
    first = b.eng.queue.ahead[0]
    b.ctx.draining = True
    b.eng.dropping(first)
    b.eng.polled()
    b.eng.unsend()
    b.eng.drop_settled(first)
    b.take()
    assert b.ahead() == [] and b.fifo() == ["b", "c", "d"]
    assert b.sent[-1] == ("d", True)  # nothing sent since: draining


def test_a_reply_racing_an_interrupt_starts_nothing_sent_ahead(b: Batch) -> None:
    """Found by the model test (RacyBatchedEngineMachine). The interrupted
    call's reply comes before its worker dies: the calls sent ahead were
    pending when the agent was held, and stay so (as with batch 0): the
    next one is not taken for started, so its callers are not told
    INTERRUPTED, a cancel of it is no TOO_LATE, and it runs on resume."""
    a = b.start("a")
    for key in "bc":
        b.invoke(key)
    b.take()
    control.interrupt(b.eng, recover=False)
    b.take()
    b.reply(a)  # written before the SIGTERM landed
    assert b.current() is None and b.eng.status == AgentStatus.INTERRUPTED
    assert b.eng.pending_count == 2
    bb = b.eng.queue.active["b"]
    assert bb.status == S.PENDING
    b.eng.replied(bb, {"ok": True, "result": "b", "snapshot": pack(["b"])})  # it went on: ignored
    b.take()
    b.eng.worker_lost()
    b.eng.worker_exited("killed by SIGTERM")
    b.take()
    assert b.fifo() == ["b", "c"] and b.answers["b"] == []
    control.cancel(b.eng, "b")  # pending: canceled, not TOO_LATE
    b.store.commit()
    assert b.answers["b"][0][1] is not None and b.answers["b"][0][1].code == Code.CANCELED
    assert b.answers["a"] == [("a", None)]
    control.resume(b.eng)
    assert any(isinstance(e, Spawn) for e in b.take()) and b.current() == "c"


def test_a_reload_leaves_what_went_ahead_to_a_worker_being_stopped_and_its_late_reply_counts_for_nothing(
        b: Batch) -> None:
    """Found by the model test (RacyBatchedEngineMachine): after a reply
    racing an interrupt the worker runs the next one sent ahead on its own,
    so a drop of it cannot be sure to win. A reload (or a drain) takes
    nothing back from a worker being stopped (to_unsend is None): what went
    ahead comes back when it dies. Before, the call went back to the queue,
    began on resume waiting for a new worker, and the old worker's reply to
    it was taken for its outcome, even when that worker held a state a failed
    commit had lost."""
    a = b.start("a")
    b.invoke("b")
    b.take()
    control.interrupt(b.eng, recover=False)
    b.take()
    b.reply(a)  # written before the SIGTERM landed; the worker goes on with b
    b.ctx.generation += 1  # new code: as golemd.driver.agent.Agent.unsend does
    first = b.eng.to_unsend()
    if first is not None:
        b.eng.dropping(first)
        b.eng.polled()
        b.eng.unsend()
        b.eng.drop_settled(first)
    b.take()
    assert first is None and b.ahead() == ["b"]
    control.resume(b.eng)
    b.take()
    assert b.current() is None and b.ahead() == ["b"]  # it waits for the worker's death
    bb = b.eng.queue.active["b"]
    b.eng.replied(bb, {"ok": True, "result": "b", "snapshot": pack(["b"])})  # the old worker's: ignored
    b.take()
    assert b.answers["b"] == [] and b.eng.completed_count == 1
    b.eng.worker_lost()
    b.eng.worker_exited("killed by SIGTERM")
    assert any(isinstance(e, Spawn) for e in b.take()) and b.current() == "b"


def test_a_reply_to_a_call_not_sent_since_it_began_is_ignored(b: Batch) -> None:
    """A call that began while its agent's worker was dying waits for a new
    one (not sent): a reply to it can only be the dying worker's, stale."""
    a = b.start("a")
    b.eng.stop_worker(now=False)  # being stopped (idle eviction, reload)
    b.reply(a)
    b.invoke("b")
    b.take()
    assert b.current() == "b"
    bb = b.eng.queue.active["b"]
    b.eng.replied(bb, {"ok": True, "result": "b", "snapshot": pack(["b"])})
    b.take()
    assert b.current() == "b" and b.answers["b"] == []
    b.eng.worker_lost()
    b.eng.worker_exited("killed by SIGTERM")
    assert any(isinstance(e, Spawn) for e in b.take())
    b.eng.worker_spawned()
    b.eng.worker_ready()
    assert any(isinstance(e, Send) and e.inv is bb for e in b.take())
    b.reply(bb)
    b.store.commit()
    assert b.answers["b"] == [("b", None)]


def test_a_failed_cancel_goes_again_in_its_place_when_the_worker_answered_the_drop_first(b: Batch) -> None:
    """Found by the model test (BatchedEngineMachine). The worker's
    `dropped` answers come before the cancel's commit: nothing may be sent
    ahead before that commit, or a cancel that fails puts `c` behind calls
    enqueued after it (here e and f went ahead while d ran, and c came after them)."""
    a = b.start("a")
    for key in "bcdef":
        b.invoke(key)
    b.take()
    b.store.commit()
    c, d = b.eng.queue.active["c"], b.eng.queue.active["d"]
    b.eng.dropping(c)
    b.eng.polled()
    control.cancel(b.eng, "c")
    b.take()
    assert b.ahead() == ["b"] and b.fifo() == ["d", "e", "f"]
    b.reply(a)  # then the worker answers the drop: c and d dropped
    b.eng.dropped(c)
    b.eng.dropped(d)
    b.take()
    b.reply(b.eng.queue.active["b"])
    assert b.current() is None and b.ahead() == []  # nothing starts: the cancel is not committed yet
    b.store.fail_next_commit()
    b.store.commit()
    b.eng.drop_settled(c)
    b.take()
    assert b.answers["c"] == [] and b.store.row(AGENT, "c")["status"] == "pending"
    assert [b.current(), *b.ahead(), *b.fifo()] == ["c", "d", "e", "f"]  # c first again


def test_a_failed_cancel_of_a_queued_call_goes_again_before_those_enqueued_after_it(b: Batch) -> None:
    """Found by the model test (RacyBatchedEngineMachine, random runs). b is
    queued (not sent ahead: a built worker is sent only its first call);
    its cancel takes it out of the queue. Nothing queued goes to the worker
    until that cancel commits (cancels_pending): c, enqueued after it, was
    sent ahead at once before, and when the commit failed b went back
    behind it."""
    for key in "abc":
        b.invoke(key)
    b.take()
    b.eng.worker_spawned()
    b.eng.worker_ready()
    b.take()
    b.store.commit()
    assert b.current() == "a" and b.ahead() == [] and b.fifo() == ["b", "c"]
    control.cancel(b.eng, "b")
    b.take()
    b.store.fail_next_commit()
    b.store.commit()
    b.take()
    assert b.answers["b"] == [] and b.store.row(AGENT, "b")["status"] == "pending"
    assert b.ahead() + b.fifo() == ["b", "c"]
