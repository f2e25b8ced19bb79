"""The Store contract (golemd/storage/base.py), checked against every implementation.

Each test runs once per backend in tests/storage/helpers.py BACKENDS
(SQLite, and PostgreSQL in a database of the session's cluster: skipped
without PostgreSQL's server, failed without it under CI), through the
`backend` and `store` fixtures (conftest.py), and uses only the Store
protocol: nothing here knows SQL. Another store: write a class with
helpers.Backend's four methods (open a store at a fresh location, open one
that sees only what was committed, count commits, clean up) and add it to
BACKENDS under a name; every test here then runs for it too. What only one
store does (schema, migrations, WAL, filing; a connection that goes away)
is tested in test_sqlite.py and test_postgres.py.

Time is stepped, never slept: tests about when a commit runs attach a
helpers.FakeLoop (call_soon, call_later, the ready queue and the clock by hand).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import msgpack
import pytest

from golemd.model.errors import Code, GolemError
from golemd.storage.base import Store
from tests.storage.helpers import A, B, Backend, FakeLoop, Told, agent_row, inv_row

FINISHED = ("completed", "failed", "canceled")


def _keys(store: Store, agent_id: str = A) -> set[str]:
    """The agent's invocation keys, as its oplog sees them."""
    return {e["idempotency_key"] for e in store.oplog(agent_id, None) if e["kind"] == "enqueued"}


def test_the_store_has_every_member_of_the_protocol(store):
    """Same names, same parameters: what the driver calls exists, as mypy checks for SqliteStore."""
    members = [name for name, value in vars(Store).items() if inspect.isfunction(value) and not name.startswith("_")]
    assert "enqueue_invocation" in members and "attach" in members and len(members) > 20
    for name in members:
        want = inspect.signature(getattr(Store, name))
        got = inspect.signature(getattr(type(store), name))
        assert list(got.parameters) == list(want.parameters), name
        assert [p.kind for p in got.parameters.values()] == [p.kind for p in want.parameters.values()], name
        assert [p.default for p in got.parameters.values()] == [p.default for p in want.parameters.values()], name


def test_the_protocol_gives_the_engine_its_journal():
    """golemd.engine.journal.Journal is the engine's view of a store: every
    Store must be one. The names here; the types where mypy sees a Store
    passed as a Journal (golemd/driver/agent.py)."""
    from golemd.engine.journal import Journal

    members = [name for name, value in vars(Journal).items() if inspect.isfunction(value) and not name.startswith("_")]
    assert "on_commit" in members
    for name in members:
        assert list(inspect.signature(getattr(Store, name)).parameters) == list(
            inspect.signature(getattr(Journal, name)).parameters), name


# -- rows ----------------------------------------------------------------------

def test_agent_rows(store):
    store.insert_agent(agent_row())
    store.update_agent(A, completed_count=3, last_error="TIMEOUT: slow", snapshot=b"\x00state")
    (row,) = store.load_agents()
    assert row["agent_id"] == A
    assert row["env"] == "default" and row["type"] == "CounterAgent"
    assert msgpack.unpackb(row["args"]) == ["a"]
    assert (row["created_at"], row["last_active_at"]) == (100.0, 100.0)
    assert row["completed_count"] == 3
    assert row["failed_count"] == 0 and row["retry_count"] == 0 and row["interrupted"] == 0
    assert row["failed_error"] is None
    assert row["last_error"] == "TIMEOUT: slow"
    assert row["snapshot"] == b"\x00state"


def test_flags_written_as_booleans_read_back_as_integers(store):
    store.insert_agent(agent_row(interrupted=True))
    assert store.load_agents()[0]["interrupted"] == 1
    store.update_agent(A, interrupted=False)
    store.commit_now()
    assert store.load_agents()[0]["interrupted"] == 0


def test_insert_agent_replaces_the_agents_row(store):
    store.insert_agent(agent_row(last_error="old"))
    store.update_agent(A, completed_count=3)
    store.insert_agent(agent_row(created_at=200.0))
    (row,) = store.load_agents()
    assert (row["created_at"], row["completed_count"], row["last_error"]) == (200.0, 0, None)


def test_updates_of_unknown_rows_change_nothing(store):
    store.insert_agent(agent_row())
    store.insert_invocation(inv_row("k1"))
    store.update_agent(B, completed_count=9)
    store.update_invocation(A, "nope", status="completed")
    store.update_invocation(B, "k1", status="completed")
    store.commit_now()
    assert [r["agent_id"] for r in store.load_agents()] == [A]
    assert store.load_agents()[0]["completed_count"] == 0
    assert store.get_invocation(A, "k1")["status"] == "pending"
    assert store.get_invocation(B, "k1") is None and store.get_invocation(A, "nope") is None


def test_invocation_rows(store):
    store.insert_agent(agent_row())
    assert store.get_invocation(A, "k1") is None
    rowid = store.insert_invocation(inv_row("k1", args=msgpack.packb([1, "x"]), schedule_at=500.0, timeout=2.5))
    got = store.get_invocation(A, "k1")
    assert got is not None
    assert got["id"] == rowid
    assert (got["agent_id"], got["key"], got["seq"], got["method"], got["status"]) == (A, "k1", 0, "increment",
                                                                                      "pending")
    assert msgpack.unpackb(got["args"]) == [1, "x"]
    assert (got["created_at"], got["schedule_at"], got["timeout"]) == (100.0, 500.0, 2.5)
    assert got["outcome"] is None and got["started_at"] is None and got["finished_at"] is None

    store.update_invocation(A, "k1", status="running", started_at=101.0)
    store.update_invocation(A, "k1", status="completed", finished_at=102.0,
                            outcome=msgpack.packb({"result": 7}))
    got = store.get_invocation(A, "k1")
    assert got["status"] == "completed"
    assert (got["started_at"], got["finished_at"]) == (101.0, 102.0)
    assert msgpack.unpackb(got["outcome"]) == {"result": 7}
    # keys are scoped to one agent
    assert store.get_invocation(B, "k1") is None
    store.insert_invocation(inv_row("k1", agent_id=B))
    assert store.get_invocation(B, "k1")["status"] == "pending"
    assert store.get_invocation(A, "k1")["status"] == "completed"


def test_update_of_one_invocation_leaves_the_others(store):
    for i in range(3):
        store.insert_invocation(inv_row(f"k{i}", seq=i))
    store.update_invocation(A, "k1", status="canceled", finished_at=5.0)
    assert [store.get_invocation(A, f"k{i}")["status"] for i in range(3)] == ["pending", "canceled", "pending"]
    assert store.get_invocation(A, "k1")["finished_at"] == 5.0 and store.get_invocation(A, "k0")["finished_at"] is None


def test_enqueue_returns_a_row_id_and_outcomes_are_written_by_it(store):
    rowid = store.enqueue_invocation(A, "k1", 0, "increment", msgpack.packb([]), "pending", 1.0, None, None)
    other = store.insert_invocation(inv_row("k2", seq=1))
    third = store.enqueue_invocation(B, "k1", 0, "increment", msgpack.packb([]), "scheduled", 1.5, 9.0, 3.0)
    assert all(isinstance(r, int) and r > 0 for r in (rowid, other, third))
    assert len({rowid, other, third}) == 3
    got = store.get_invocation(B, "k1")
    assert (got["id"], got["status"], got["created_at"], got["schedule_at"], got["timeout"]) == (
        third, "scheduled", 1.5, 9.0, 3.0)
    store.finish_invocation(rowid, "completed", msgpack.packb({"result": 1}), 5.0, 2.0)
    row = store.get_invocation(A, "k1")
    assert (row["id"], row["status"], row["finished_at"], row["started_at"]) == (rowid, "completed", 5.0, 2.0)
    assert msgpack.unpackb(row["outcome"]) == {"result": 1}
    assert store.get_invocation(A, "k2")["status"] == "pending"
    assert store.get_invocation(B, "k1")["status"] == "scheduled"


def test_finishing_a_deleted_invocation_changes_nothing(store):
    rowid = store.enqueue_invocation(A, "k1", 0, "increment", b"", "pending", 1.0, None, None)
    store.enqueue_invocation(B, "k1", 0, "increment", b"", "pending", 1.0, None, None)
    store.delete_agent(A)
    store.finish_invocation(rowid, "completed", b"", 5.0, 2.0)
    store.commit_now()
    assert store.get_invocation(A, "k1") is None
    assert store.get_invocation(B, "k1")["status"] == "pending"


def test_reads_see_the_stores_own_writes_before_they_are_committed(store, backend):
    store.insert_agent(agent_row(snapshot=b"s1"))
    store.insert_invocation(inv_row("k1"))
    store.event(A, 100.0, "created")
    assert [r["agent_id"] for r in store.load_agents()] == [A]
    assert store.get_invocation(A, "k1")["status"] == "pending"
    assert store.saved_snapshot(A) == b"s1"
    assert [r["key"] for r in store.load_active()[A]] == ["k1"]
    assert [e["kind"] for e in store.oplog(A, None)] == ["created", "enqueued"]
    crashed = backend.after_crash()
    assert crashed.load_agents() == [] and crashed.get_invocation(A, "k1") is None


def test_load_active_in_queue_order(store):
    statuses = ["completed", "pending", "running", "scheduled", "failed", "canceled", "pending"]
    for seq, status in reversed(list(enumerate(statuses))):
        store.insert_invocation(inv_row(f"k{seq}", seq=seq, status=status))
    store.insert_invocation(inv_row("other", agent_id=B, seq=0))
    store.insert_invocation(inv_row("done", agent_id="C()", seq=0, status="completed"))
    active = store.load_active()
    assert [(r["key"], r["status"]) for r in active[A]] == [
        ("k1", "pending"), ("k2", "running"), ("k3", "scheduled"), ("k6", "pending")]
    assert [r["key"] for r in active[B]] == ["other"]
    assert "C()" not in active  # nothing open there
    assert active[A][0]["id"] == store.get_invocation(A, "k1")["id"]


def test_next_seqs(store):
    assert store.next_seqs() == {}
    store.insert_agent(agent_row("Idle()"))  # an agent without invocations has no entry
    for seq, status in [(0, "completed"), (4, "failed"), (2, "pending")]:
        store.insert_invocation(inv_row(f"k{seq}", seq=seq, status=status))
    store.insert_invocation(inv_row("b", agent_id=B, seq=0, status="canceled"))
    assert store.next_seqs() == {A: 5, B: 1}


def test_text_of_any_code_point_comes_back_as_it_went_in(store, backend):
    """Idempotency keys, error messages and details are the clients' and the
    agents' strings: a NUL, a noncharacter, anything Unicode has."""
    odd = "k\x00\uffff\uffff0\U0001f600\u00e9 \\0"
    store.insert_agent(agent_row(last_error="bad\x00 error \uffff"))
    rowid = store.enqueue_invocation(A, odd, 0, "m", b"\x90", "pending", 1.0, None, None)
    store.event(A, 2.0, "retried", odd, "m", "detail\x00\uffff")
    store.put_effect(A, odd, 0, "promise", msgpack.packb({}), 1.5, result=msgpack.packb({"value": "p"}),
                     finished_at=1.5)
    store.put_promise("p\x00", A, odd, 0, 1.5)
    store.commit_now()
    for s in (store, backend.after_crash()):
        assert s.get_invocation(A, odd)["id"] == rowid and s.get_invocation(A, "k") is None
        assert s.load_agents()[0]["last_error"] == "bad\x00 error \uffff"
        assert [(r["key"], r["seq"]) for r in s.load_active()[A]] == [(odd, 0)]
        retried = [e for e in s.oplog(A, None) if e["kind"] == "retried"]
        assert [(e["idempotency_key"], e["detail"]) for e in retried] == [(odd, "detail\x00\uffff")]
        assert [r["key"] for r in s.load_effects(A, odd)] == [odd]
        assert s.get_promise("p\x00")["key"] == odd and s.get_promise("p") is None
    store.forget_invocations(A, [odd])
    store.commit_now()
    assert store.get_invocation(A, odd) is None and store.get_promise("p\x00") is None


def test_saved_snapshot(backend):
    s = backend.open()
    assert s.saved_snapshot(A) is None  # unknown agent
    s.insert_agent(agent_row())
    assert s.saved_snapshot(A) is None  # none saved yet
    s.update_agent(A, snapshot=b"\x80state-1")
    s.commit_now()
    s.update_agent(A, snapshot=b"\x80state-2")
    assert s.saved_snapshot(A) == b"\x80state-2"
    assert backend.after_crash().saved_snapshot(A) == b"\x80state-1"  # the committed one
    s.close()
    s = backend.open()
    try:
        assert s.saved_snapshot(A) == b"\x80state-2"  # close committed the last
        assert s.saved_snapshot(B) is None
    finally:
        s.close()


def test_reopening_keeps_everything(backend):
    s = backend.open()
    s.insert_agent(agent_row())
    rowid = s.enqueue_invocation(A, "k1", 3, "increment", b"\x90", "pending", 1.0, None, None)
    s.event(A, 1.0, "created")
    s.commit_now()
    s.close()
    s = backend.open()
    try:
        assert [r["agent_id"] for r in s.load_agents()] == [A]
        assert [(r["key"], r["id"]) for r in s.load_active()[A]] == [("k1", rowid)]
        assert s.next_seqs() == {A: 4}
        assert [e["kind"] for e in s.oplog(A, None)] == ["created", "enqueued"]
    finally:
        s.close()


# -- group commit: what is durable, and who is told --------------------------------

def test_nothing_is_durable_before_a_commit_and_everything_after(backend):
    async def main() -> None:
        s = backend.open()
        try:
            s.insert_agent(agent_row())
            s.insert_invocation(inv_row("k1"))
            s.event(A, 100.0, "created")
            # written but not committed: a crash now would lose it
            crashed = backend.after_crash()
            assert crashed.load_agents() == [] and crashed.get_invocation(A, "k1") is None
            assert crashed.oplog(A, None) == []
            await asyncio.wait_for(s.commit(), 5)
            # committed: all of it survives
            crashed = backend.after_crash()
            assert [r["agent_id"] for r in crashed.load_agents()] == [A]
            assert crashed.get_invocation(A, "k1")["status"] == "pending"
            assert [e["kind"] for e in crashed.oplog(A, None)] == ["created", "enqueued"]
        finally:
            s.close()

    asyncio.run(main())


def test_concurrent_writers_share_one_commit_on_the_running_loop(backend):
    """Not attached: the store commits on whichever asyncio loop runs."""
    async def main() -> None:
        s = backend.open()
        commits = backend.count_commits(s)

        async def writer(i: int) -> None:
            s.insert_invocation(inv_row(f"k{i}", seq=i))
            await s.commit()
            # when this caller's commit resolves, its write is durable
            assert backend.after_crash().get_invocation(A, f"k{i}")["status"] == "pending"

        try:
            await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(10))), 5)
            assert commits() == 1
            assert len(_keys(backend.after_crash())) == 10
            # a second round gets a second commit
            s.insert_agent(agent_row())
            await asyncio.wait_for(asyncio.gather(s.commit(), s.commit()), 5)
            assert commits() == 2
        finally:
            s.close()

    asyncio.run(main())


def test_writers_of_one_round_share_one_commit_at_its_end(store, backend, loop: FakeLoop):
    store.attach(loop.hooks())
    commits = backend.count_commits(store)
    told = Told()

    def writer(i: int) -> None:
        store.insert_invocation(inv_row(f"k{i}", seq=i))
        store.on_commit(told(f"k{i}"))

    for i in range(5):
        loop.call_soon(lambda i=i: writer(i))
    assert loop.run_round() == 5
    assert commits() == 0 and told.heard == []  # the commit is the next round's
    assert loop.run_round() == 1
    assert commits() == 1 and told.names == [f"k{i}" for i in range(5)]
    assert told.heard[0] == ("k0", None)
    assert len(_keys(backend.after_crash())) == 5


def test_a_lone_caller_is_told_at_once_when_nothing_else_is_ready(store, backend, loop: FakeLoop):
    """Nothing else in this loop round could share the commit: it runs inside on_commit."""
    store.attach(loop.hooks())
    commits = backend.count_commits(store)
    told = Told()
    store.insert_invocation(inv_row("k1"))
    store.on_commit(told("k1"))
    assert told.names == ["k1"] and commits() == 1 and not loop.ready
    loop.call_soon(lambda: None)  # something else will run in this round
    store.insert_invocation(inv_row("k2", seq=1))
    store.on_commit(told("k2"))
    assert told.names == ["k1"]
    loop.run_round()
    loop.run_round()
    assert told.names == ["k1", "k2"] and commits() == 2


def test_held_writes_share_one_commit_at_release(store, backend, loop: FakeLoop):
    """A batch of requests read together: a lone writer would commit at once
    (nothing else is ready), but hold() keeps the commit for release()."""
    store.attach(loop.hooks())
    commits = backend.count_commits(store)
    told = Told()
    store.hold()
    store.hold()  # holds nest
    for i in range(5):
        store.insert_invocation(inv_row(f"k{i}", seq=i))
        store.on_commit(told(f"k{i}"))
    store.release()
    assert commits() == 0 and told.heard == [] and not loop.ready
    assert backend.after_crash().get_invocation(A, "k0") is None
    store.release()
    assert commits() == 1
    assert told.names == [f"k{i}" for i in range(5)]  # in the order they asked
    assert len(_keys(backend.after_crash())) == 5


def test_commit_now_commits_while_held(store, backend):
    told = Told()
    store.hold()
    store.insert_invocation(inv_row("k1"))
    store.on_commit(told("k1"))
    store.commit_now()
    assert told.heard == [("k1", None)]
    assert backend.after_crash().get_invocation(A, "k1") is not None
    store.release()


def test_an_idle_commit_waits_for_the_next_commit_or_for_the_loop_to_idle(store, backend, loop: FakeLoop):
    """A warm call's enqueue (on_commit_idle) shares its outcome's commit when
    the reply comes first; else the loop's idle hook commits it alone."""
    store.attach(loop.hooks(idle_hook=True))
    commits = backend.count_commits(store)
    told = Told()
    assert store.idle(True) is False  # nothing written: nothing to do
    store.hold()
    store.insert_invocation(inv_row("k1", seq=1))
    store.on_commit_idle(told("enqueued"))
    store.release()  # only an idle commit waits: release does not start it
    loop.run_round()
    assert commits() == 0 and told.heard == [] and not loop.ready  # nobody needs it yet
    store.update_invocation(A, "k1", status="completed")
    store.on_commit(told("finished"))
    assert commits() == 1  # one commit for both
    assert told.names == ["enqueued", "finished"]

    store.insert_invocation(inv_row("k2", seq=2))
    store.on_commit_idle(told("alone"))
    assert store.idle(False) is False  # the loop is busy, and it has not waited long
    loop.advance(1.0)  # long past any store's bound
    assert store.idle(False) is True  # it has waited long enough, busy loop or not
    assert store.idle(True) is False  # already scheduled
    assert told.names[-1] == "finished"
    loop.run_round()
    assert commits() == 2 and told.names[-1] == "alone"

    store.insert_invocation(inv_row("k3", seq=3))
    store.on_commit_idle(told("asleep"))
    assert store.idle(True) is True  # the loop would sleep: at once
    loop.run_round()
    assert told.names[-1] == "asleep" and commits() == 3
    crashed = backend.after_crash()
    assert [(k, crashed.get_invocation(A, k)["status"]) for k in ("k1", "k2", "k3")] == [
        ("k1", "completed"), ("k2", "pending"), ("k3", "pending")]


def test_the_idle_hook_commits_writes_nobody_asked_to_commit(store, loop: FakeLoop):
    store.attach(loop.hooks(idle_hook=True))
    store.insert_invocation(inv_row("k1"))
    assert store.idle(True) is True
    loop.run_round()
    assert store.idle(True) is False  # committed: nothing left


def test_an_idle_commit_without_an_idle_hook_is_an_ordinary_one(store, loop: FakeLoop):
    store.attach(loop.hooks())
    told = Told()
    store.insert_invocation(inv_row("k1", seq=1))
    store.on_commit_idle(told("enqueued"))
    assert told.names == ["enqueued"]  # nothing else was ready: committed at once


def test_an_idle_commit_with_nothing_written_is_told_at_once(store, loop: FakeLoop):
    store.attach(loop.hooks(idle_hook=True))
    told = Told()
    store.on_commit_idle(told("nothing"))
    assert told.heard == [("nothing", None)]


def test_under_load_a_group_commit_waits_a_little_to_take_in_more(store, backend, loop: FakeLoop):
    load = {"busy": True}
    store.attach(loop.hooks(busy=lambda: load["busy"]))
    commits = backend.count_commits(store)
    told = Told()
    store.insert_invocation(inv_row("k1", seq=1))
    store.on_commit(told("k1"))
    (timer,) = loop.pending_timers()
    assert 0 < timer.delay < 0.1  # a little: a caller waits that long
    loop.run_round()  # a loop round: not yet, the load may bring more
    store.insert_invocation(inv_row("k2", seq=2))
    store.on_commit(told("k2"))
    assert commits() == 0 and told.heard == [] and len(loop.pending_timers()) == 1
    loop.advance(timer.delay)
    assert commits() == 1 and told.names == ["k1", "k2"]  # one commit for both
    load["busy"] = False
    store.insert_invocation(inv_row("k3", seq=3))
    store.on_commit(told("k3"))
    assert commits() == 2 and told.names[-1] == "k3"  # no load: at once
    store.insert_invocation(inv_row("k4", seq=4))
    load["busy"] = True
    store.on_commit(told("k4"))
    assert len(loop.pending_timers()) == 1
    store.commit_now()  # a commit before the delay is up: the timer is dropped with it
    assert told.names[-1] == "k4" and loop.pending_timers() == []
    loop.advance(1.0)
    assert commits() == 3 and len(told.heard) == 4


def test_write_before_commit_runs_once_per_commit_in_the_same_transaction(store, backend):
    async def main() -> None:
        store.insert_agent(agent_row())
        store.commit_now()
        writes: list[int] = []
        for n in (1, 2, 3):
            store.insert_invocation(inv_row(f"k{n}", seq=n))

            def write(n: int = n) -> None:
                writes.append(n)
                store.update_agent(A, completed_count=n)

            store.write_before_commit(A, write)  # asked three times: written once, the last
        assert writes == []
        await asyncio.wait_for(store.commit(), 5)
        assert writes == [3]
        assert backend.after_crash().load_agents()[0]["completed_count"] == 3
        # another commit does not write it again
        store.insert_invocation(inv_row("k4", seq=4))
        await asyncio.wait_for(store.commit(), 5)
        assert writes == [3]

    asyncio.run(main())


def test_write_later_waits_for_its_timer_or_for_a_commit_that_writes_its_name(store, backend, loop: FakeLoop):
    store.attach(loop.hooks())
    store.insert_agent(agent_row())
    store.commit_now()
    writes: list[str] = []

    def write(what: str) -> None:
        writes.append(what)
        store.update_agent(A, last_error=what)

    store.write_later(A, lambda: write("first"))
    store.write_later(A, lambda: write("later"))  # asked again: the last one given is written
    store.insert_invocation(inv_row("k1"))
    store.commit_now()  # start-up and shutdown take them, as close() does
    assert writes == ["later"]
    store.write_later(A, lambda: write("timed"))
    store.insert_invocation(inv_row("k2", seq=1))
    told = Told()
    store.on_commit(told("k2"))
    loop.run_round()
    assert told.heard == [("k2", None)] and writes == ["later"]  # another commit does not take it
    assert backend.after_crash().agent_row(A)["last_error"] == "later"
    loop.advance(store.LATER_DELAY)  # its own commit
    assert writes == ["later", "timed"]
    assert backend.after_crash().agent_row(A)["last_error"] == "timed"
    store.write_later(A, lambda: write("then"))
    store.write_before_commit(A, lambda: write("now"))  # one write under this name, in this commit
    store.insert_invocation(inv_row("k3", seq=2))
    store.on_commit(told("k3"))
    loop.run_round()
    loop.advance(store.LATER_DELAY)
    assert writes == ["later", "timed", "now"]
    assert loop.pending_timers() == []


def test_an_agent_row_reads_rolled_forward_over_its_completions_above_fin_upto(store, backend):
    store.insert_agent(agent_row(A, completed_count=2, failed_count=1, fin_upto=2, snapshot=b"s2",
                                 last_error="E", last_active_at=100.0))
    store.insert_agent(agent_row(B))
    finished = [("k1", 2, b"old", 110.0, "completed"), ("k2", 3, b"s3", 120.0, "completed"),
                ("k3", None, None, 125.0, "failed"), ("k4", 4, None, 130.0, "completed")]
    for seq, (key, fin, snapshot, at, status) in enumerate(finished):
        rowid = store.enqueue_invocation(A, key, seq, "increment", b"\x90", "running", 100.0, None, None)
        store.finish_invocation(rowid, status, b"\x80", at, 101.0, snapshot, fin=fin)
    rowid = store.enqueue_invocation(B, "b1", 0, "increment", b"\x90", "running", 100.0, None, None)
    store.finish_invocation(rowid, "completed", b"\x80", 140.0, 101.0, b"b", fin=1)
    store.commit_now()
    for s in (store, backend.after_crash()):
        row = s.agent_row(A)
        assert row is not None
        # k1 is in fin_upto already; k3 (no fin) is in the row's counts by other writes
        assert (row["completed_count"], row["failed_count"], row["fin_upto"]) == (4, 1, 4)
        assert (row["snapshot"], row["last_active_at"], row["last_error"]) == (b"s3", 130.0, "E")
        assert s.saved_snapshot(A) == b"s3"
        assert next(r for r in s.load_agents() if r["agent_id"] == A) == row
        assert s.load_one(A).row == row
        other = s.agent_row(B)
        assert (other["completed_count"], other["snapshot"], other["fin_upto"], other["last_active_at"]) == (
            1, b"b", 1, 140.0)
        assert s.agent_row('CounterAgent("nobody")') is None
    # Written with fin_upto 4, the row has nothing left to roll forward.
    store.update_agent(A, completed_count=4, fin_upto=4, snapshot=b"s3", last_active_at=130.0)
    store.commit_now()
    assert backend.after_crash().agent_row(A) == store.agent_row(A)
    assert store.agent_row(A)["completed_count"] == 4


def _broken() -> None:
    raise GolemError(Code.STORAGE_FULL, "no space")


def test_a_failed_commit_rolls_back_every_write_of_the_group_and_tells_everyone(store, backend):
    async def main() -> None:
        store.insert_agent(agent_row())
        store.insert_invocation(inv_row("k0"))
        store.commit_now()
        told = Told()
        store.hold()
        store.insert_invocation(inv_row("k1", seq=1))  # one caller's write
        store.on_commit(told("first"))
        store.update_invocation(A, "k0", status="canceled")  # another's
        store.update_agent(A, snapshot=b"new")
        store.on_commit(told("second"))
        store.write_before_commit(A, _broken)
        fut = store.commit()
        store.release()
        with pytest.raises(GolemError) as info:
            await asyncio.wait_for(fut, 5)
        assert info.value.code == Code.STORAGE_FULL
        assert told.heard == [("first", Code.STORAGE_FULL), ("second", Code.STORAGE_FULL)]
        # none of it, in the store or on disk
        for s in (store, backend.after_crash()):
            assert s.get_invocation(A, "k1") is None
            assert s.get_invocation(A, "k0")["status"] == "pending"
            assert s.saved_snapshot(A) is None
        # and the store goes on: the next group commits, the broken write is forgotten
        store.insert_invocation(inv_row("k2", seq=2))
        await asyncio.wait_for(store.commit(), 5)
        assert backend.after_crash().get_invocation(A, "k2")["status"] == "pending"
        assert told.heard[-1] == ("second", Code.STORAGE_FULL) and len(told.heard) == 2  # told once

    asyncio.run(main())


def test_callbacks_are_told_in_order_and_one_that_raises_does_not_stop_the_others(store, loop: FakeLoop, caplog):
    store.attach(loop.hooks())
    told = Told()

    def raises(err: Any) -> None:
        told.heard.append(("raises", err))
        raise RuntimeError("a callback's bug")

    store.hold()
    store.insert_invocation(inv_row("k1"))
    store.on_commit(told("a"))
    store.on_commit(raises)
    store.on_commit(told("b"))
    store.release()
    assert told.names == ["a", "raises", "b"]
    assert "a commit callback failed" in caplog.text
    store.insert_invocation(inv_row("k2", seq=1))
    store.commit_now()
    assert len(told.heard) == 3  # each is told once


def test_commit_with_nothing_written_resolves_at_once(store):
    async def main() -> None:
        fut = store.commit()
        assert fut.done() and fut.result() is None
        told = Told()
        store.on_commit(told("nothing"))
        assert told.heard == [("nothing", None)]
        store.hold()  # at once, held or not: nothing to wait for
        store.on_commit(told("held"))
        assert told.names == ["nothing", "held"]
        store.release()
        store.insert_agent(agent_row())
        await store.commit()
        again = store.commit()
        assert again.done()

    asyncio.run(main())


def test_commit_soon_commits_telling_no_one(store, backend, loop: FakeLoop, caplog):
    store.attach(loop.hooks())
    loop.call_soon(lambda: None)  # something else runs in this round: the commit ends it
    store.insert_agent(agent_row())
    store.commit_soon()
    assert backend.after_crash().load_agents() == []
    loop.run_round()
    assert [r["agent_id"] for r in backend.after_crash().load_agents()] == [A]
    # a failure is logged, since nobody hears of it
    store.update_agent(A, snapshot=b"lost")
    store.write_before_commit(A, _broken)
    store.commit_soon()
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert store.saved_snapshot(A) is None


def test_commit_now_and_close_commit_pending_writes(backend):
    s = backend.open()
    s.insert_agent(agent_row())
    assert backend.after_crash().load_agents() == []
    s.commit_now()
    assert len(backend.after_crash().load_agents()) == 1
    told = Told()
    s.hold()
    s.insert_agent(agent_row(B))
    s.on_commit(told("closing"))
    s.close()
    assert told.heard == [("closing", None)]  # nobody is left waiting
    assert {r["agent_id"] for r in backend.after_crash().load_agents()} == {A, B}


# -- delete and prune ------------------------------------------------------------

def _fill(store: Store, agent_id: str) -> None:
    store.insert_agent(agent_row(agent_id, snapshot=b"state"))
    store.insert_invocation(inv_row("k1", agent_id=agent_id))
    store.insert_invocation(inv_row("k2", agent_id=agent_id, seq=1, status="completed", finished_at=120.0))
    store.event(agent_id, 100.0, "created")
    store.event(agent_id, 110.0, "suspended")


def _everything(store: Store, agent_id: str) -> tuple[int, int, int, int]:
    """The agent's rows, invocations (in its log), its events and open invocations."""
    log = store.oplog(agent_id, None)
    return (sum(1 for r in store.load_agents() if r["agent_id"] == agent_id),
            sum(1 for e in log if e["kind"] == "enqueued"),
            sum(1 for e in log if e["kind"] in ("created", "suspended")),
            len(store.load_active().get(agent_id, [])))


def test_delete_agent(store, backend):
    _fill(store, A)
    _fill(store, B)
    store.commit_now()
    assert _everything(store, A) == (1, 2, 2, 1)
    store.delete_agent(A)
    store.commit_now()
    for s in (store, backend.after_crash()):
        assert _everything(s, A) == (0, 0, 0, 0)
        assert _everything(s, B) == (1, 2, 2, 1)
        assert [r["agent_id"] for r in s.load_agents()] == [B]
        assert s.get_invocation(A, "k1") is None and s.get_invocation(A, "k2") is None
        assert s.saved_snapshot(A) is None and s.saved_snapshot(B) == b"state"
        assert s.oplog(A, None) == []
        assert A not in s.next_seqs()
    # deleting an unknown agent is harmless
    store.delete_agent("Nobody()")
    store.commit_now()
    assert _everything(store, B) == (1, 2, 2, 1)


def test_an_agent_created_again_after_a_delete_is_deleted_whole(store):
    """DESIGN §1: delete removes the stored outcomes, so a reused key runs
    afresh. Many rows, then the newest deleted: stores that reuse row ids
    (SQLite) or file rows in batches (SQLite, every 2,000) must still find
    the new ones."""
    for t in range(2500):
        store.enqueue_invocation(A, f"k{t}", t, "increment", b"", "completed", 1.0, None, None)
    store.commit_now()
    store.delete_agent(A)
    store.commit_now()
    for t in range(3):
        store.enqueue_invocation(A, f"k{t}", t, "increment", b"", "completed", 2.0, None, None)
    store.commit_now()
    assert _keys(store) == {"k0", "k1", "k2"}
    store.delete_agent(A)
    store.commit_now()
    assert store.get_invocation(A, "k0") is None and store.next_seqs() == {}


def _prune_fixture(store: Store) -> None:
    """Ten finished invocations f1..f10 finished at t=1..10, plus active ones."""
    for t in range(1, 11):
        store.insert_invocation(inv_row(f"f{t}", seq=t, status=FINISHED[t % 3], finished_at=float(t)))
    store.insert_invocation(inv_row("pending", seq=11, status="pending"))
    store.insert_invocation(inv_row("running", seq=12, status="running", started_at=0.5))
    store.insert_invocation(inv_row("scheduled", seq=13, status="scheduled", schedule_at=10_000.0))
    # another agent's outcomes are never touched
    for t in range(1, 11):
        store.insert_invocation(inv_row(f"f{t}", agent_id=B, seq=t, status="completed", finished_at=float(t)))


ACTIVE_KEYS = {"pending", "running", "scheduled"}


@pytest.mark.parametrize(("keep", "older_than", "kept"), [
    (3, 100.0, {8, 9, 10}),           # old ones beyond the newest 3 go
    (3, 5.5, {6, 7, 8, 9, 10}),       # newer than the cutoff stay even beyond 3
    (3, 0.0, set(range(1, 11))),      # everything is newer than the cutoff
    (0, 100.0, set()),                # keep none of the old ones
    (0, 7.0, {8, 9, 10}),             # the cutoff itself is not newer
    (10, 100.0, set(range(1, 11))),   # exactly `keep` finished ones
    (50, 100.0, set(range(1, 11))),
])
def test_prune(store, backend, keep, older_than, kept):
    _prune_fixture(store)
    store.commit_now()
    removed = store.prune(A, keep, older_than)
    store.commit_now()
    assert removed == 10 - len(kept)
    assert _keys(store) == {f"f{t}" for t in kept} | ACTIVE_KEYS
    assert _keys(store, B) == {f"f{t}" for t in range(1, 11)}
    assert {f"f{t}" for t in range(1, 11) if store.get_invocation(A, f"f{t}")} == {f"f{t}" for t in kept}
    # durable, not only in this store
    assert _keys(backend.after_crash()) == _keys(store)


def test_prune_returns_a_count(store):
    _prune_fixture(store)
    assert store.prune(A, 50, 100.0) == 0
    assert store.prune(A, 3, 100.0) == 7
    assert store.prune(A, 3, 100.0) == 0


def test_prune_never_deletes_active_invocations(store):
    # even active ones carrying an old finished_at (e.g. retried after a finish was recorded)
    for i, status in enumerate(["pending", "running", "scheduled"]):
        store.insert_invocation(inv_row(status, seq=i, status=status, finished_at=0.1))
    for t in range(1, 4):
        store.insert_invocation(inv_row(f"f{t}", seq=10 + t, status="completed", finished_at=float(t)))
    assert store.prune(A, 0, 1000.0) == 3
    assert _keys(store) == ACTIVE_KEYS


def test_prune_drops_old_events_only(store):
    _prune_fixture(store)
    store.event(A, 1.0, "created")
    store.event(A, 9.5, "suspended")  # after the 3rd newest finish (8.0): kept
    store.event(A, 7.5, "resumed_from_snapshot")
    store.event(B, 1.0, "created")  # another agent's
    assert store.prune(A, 3, 100.0) == 7 + 2
    kinds = [e["kind"] for e in store.oplog(A, None) if "idempotency_key" not in e]
    assert kinds == ["suspended"]
    assert [e["kind"] for e in store.oplog(B, None) if "idempotency_key" not in e] == ["created"]


def test_prune_keeps_events_newer_than_the_cutoff(store):
    _prune_fixture(store)
    store.event(A, 1.0, "created")
    store.event(A, 2.0, "suspended")
    store.prune(A, 3, 1.5)
    kinds = [e["kind"] for e in store.oplog(A, None) if "idempotency_key" not in e]
    assert kinds == ["suspended"]


def test_prune_keeps_newest_n_with_ties(store):
    for i, t in enumerate([1.0, 2.0, 2.0, 3.0]):
        store.insert_invocation(inv_row(f"f{i}", seq=i, status="completed", finished_at=t))
    store.prune(A, 2, 100.0)
    kept = _keys(store)
    assert "f3" in kept and "f0" not in kept and len(kept) >= 2


# -- oplog ----------------------------------------------------------------------------

def _oplog_fixture(store: Store) -> None:
    store.insert_agent(agent_row())
    store.event(A, 10.0, "created")
    # k1: enqueued at 10 (same ts as "created"), started 11, completed 12
    store.insert_invocation(inv_row("k1", seq=0, status="completed", created_at=10.0,
                                    started_at=11.0, finished_at=12.0))
    store.event(A, 12.5, "suspended", detail="idle")
    store.event(A, 12.8, "resumed_from_snapshot")
    # k2: enqueued at 11.5 (before k1 finished), started 13, failed 14
    store.insert_invocation(inv_row("k2", seq=1, status="failed", created_at=11.5, started_at=13.0,
                                    finished_at=14.0))
    # k3: still pending
    store.insert_invocation(inv_row("k3", seq=2, status="pending", created_at=15.0))
    store.event(A, 16.0, "interrupted", key="k3", method="increment", detail="by the user")
    store.event(B, 11.0, "created")  # another agent


EXPECTED_OPLOG = [
    (10.0, "created", None),
    (10.0, "enqueued", "k1"),
    (11.0, "started", "k1"),
    (11.5, "enqueued", "k2"),
    (12.0, "completed", "k1"),
    (12.5, "suspended", None),
    (12.8, "resumed_from_snapshot", None),
    (13.0, "started", "k2"),
    (14.0, "failed", "k2"),
    (15.0, "enqueued", "k3"),
    (16.0, "interrupted", "k3"),
]


def test_oplog_merges_in_time_order(store):
    _oplog_fixture(store)
    entries = store.oplog(A, None)
    assert [(e["ts"], e["kind"], e.get("idempotency_key")) for e in entries] == EXPECTED_OPLOG
    assert [e["index"] for e in entries] == list(range(1, len(EXPECTED_OPLOG) + 1))
    started = entries[2]
    assert started == {"index": 3, "ts": 11.0, "kind": "started", "idempotency_key": "k1",
                       "method": "increment"}
    assert entries[0] == {"index": 1, "ts": 10.0, "kind": "created"}
    assert entries[5] == {"index": 6, "ts": 12.5, "kind": "suspended", "detail": "idle"}
    assert entries[-1] == {"index": 11, "ts": 16.0, "kind": "interrupted", "idempotency_key": "k3",
                           "method": "increment", "detail": "by the user"}
    assert [e["kind"] for e in store.oplog(B, None)] == ["created"]
    assert store.oplog("Nobody()", None) == []


def test_oplog_same_timestamp_keeps_lifecycle_order(store):
    # a fast call on a coarse clock: everything at one instant
    store.event(A, 5.0, "created")
    store.insert_invocation(inv_row("z", seq=0, status="completed", created_at=5.0, started_at=5.0,
                                    finished_at=5.0))
    store.insert_invocation(inv_row("a", seq=1, status="canceled", created_at=5.0, finished_at=5.0))
    entries = store.oplog(A, None)
    kinds = [(e["kind"], e.get("idempotency_key")) for e in entries]
    assert kinds[0] == ("created", None)
    # at one instant: created, then every enqueued, then started, then the rest
    assert [k for k, _ in kinds[:4]] == ["created", "enqueued", "enqueued", "started"]
    assert {k for k, _ in kinds[4:]} == {"completed", "canceled"}
    for key, lifecycle in (("z", ["enqueued", "started", "completed"]), ("a", ["enqueued", "canceled"])):
        assert [k for k, ik in kinds if ik == key] == lifecycle
    assert [e["index"] for e in entries] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("last", [1, 3, 11, 100])
def test_oplog_last(store, last):
    _oplog_fixture(store)
    full = store.oplog(A, None)
    tail = store.oplog(A, last)
    assert tail == full[-last:]
    # the newest N keep their indexes in the whole log
    assert tail[-1]["index"] == len(full)
    assert [e["index"] for e in tail] == list(range(len(full) - len(tail) + 1, len(full) + 1))


def test_oplog_last_zero(store):
    _oplog_fixture(store)
    assert store.oplog(A, None) != []
    assert store.oplog(A, 0) == []


def test_the_oplog_survives_a_crash_once_committed(store, backend):
    _oplog_fixture(store)
    store.commit_now()
    assert backend.after_crash().oplog(A, None) == store.oplog(A, None)


# -- the oplog's content (OplogEntry's additive fields, read from the rows kept already) --

# The fields every entry had before its content was added: a reader that
# knows only these sees them as it always did.
OLD_FIELDS = {"index", "ts", "kind", "idempotency_key", "method", "detail"}
CONTENT_FIELDS = {"args", "schedule_at", "timeout", "result", "error", "effect", "omitted"}


def _call(method: str, *args: Any) -> bytes:
    """An invocation's `args` column as the daemon writes it: [method, args]."""
    return msgpack.packb([method, list(args)])


def _content_fixture(store: Store) -> None:
    """Written through the hot path's own methods (enqueue_invocation,
    finish_invocation): the content costs those writes nothing more."""
    ok = store.enqueue_invocation(A, "ok", 0, "add", _call("add", 5, "x"), "pending", 10.0, None, None)
    store.finish_invocation(ok, "completed", msgpack.packb({"result": {"total": 5}}), 12.0, 11.0)
    none = store.enqueue_invocation(A, "none", 1, "get", _call("get"), "pending", 13.0, None, None)
    store.finish_invocation(none, "completed", msgpack.packb({"result": None}), 14.0, 13.5)
    bad = store.enqueue_invocation(A, "bad", 2, "add", _call("add", -1), "pending", 15.0, None, None)
    store.finish_invocation(bad, "failed", msgpack.packb({"error": {
        "code": "INVOCATION_FAILED", "message": "ValueError: no",
        "details": {"type": "ValueError", "message": "no", "traceback": "Traceback..."}}}), 16.0, 15.5)
    store.enqueue_invocation(A, "gone", 3, "add", _call("add", 1), "pending", 17.0, None, None)
    store.update_invocation(A, "gone", status="canceled", finished_at=18.0)
    store.enqueue_invocation(A, "later", 4, "add", _call("add", 2), "scheduled", 19.0, 500.0, 2.5)
    store.event(A, 20.0, "retried", "later", "add", "attempt 2 after 0.1s: killed by SIGKILL")


def test_oplog_entries_carry_their_content(store):
    _content_fixture(store)
    by = {(e.get("idempotency_key"), e["kind"]): e for e in store.oplog(A, None)}
    assert by["ok", "enqueued"] == {"index": 1, "ts": 10.0, "kind": "enqueued", "idempotency_key": "ok",
                                    "method": "add", "args": [5, "x"]}
    assert by["ok", "started"] == {"index": 2, "ts": 11.0, "kind": "started", "idempotency_key": "ok",
                                   "method": "add"}
    assert by["ok", "completed"] == {"index": 3, "ts": 12.0, "kind": "completed", "idempotency_key": "ok",
                                     "method": "add", "result": {"total": 5}}
    assert by["none", "enqueued"]["args"] == []
    # a method that returned None: the result is there, nil
    assert "result" in by["none", "completed"] and by["none", "completed"]["result"] is None
    # a failure: its code and message, not the traceback
    assert by["bad", "failed"]["error"] == {"code": "INVOCATION_FAILED", "message": "ValueError: no"}
    assert "result" not in by["bad", "failed"]
    # canceled: it has no outcome, so no content
    assert by["gone", "canceled"] == {"index": by["gone", "canceled"]["index"], "ts": 18.0, "kind": "canceled",
                                      "idempotency_key": "gone", "method": "add"}
    assert by["later", "enqueued"]["schedule_at"] == 500.0 and by["later", "enqueued"]["timeout"] == 2.5
    assert by["later", "retried"]["detail"] == "attempt 2 after 0.1s: killed by SIGKILL"
    assert "schedule_at" not in by["ok", "enqueued"] and "timeout" not in by["ok", "enqueued"]


def test_oplog_content_is_additive(store, backend):
    """Every entry holds the fields it held before, with the same values;
    the content is in new fields only. And it is durable: read from committed rows."""
    _content_fixture(store)
    store.put_effect(A, "ok", 0, "step", msgpack.packb({"fn": "f", "args": []}), 11.5, result=_value(1),
                     finished_at=11.5)
    store.commit_now()
    entries = store.oplog(A, None)
    for e in entries:
        assert set(e) <= OLD_FIELDS | CONTENT_FIELDS, e
        assert isinstance(e["index"], int) and isinstance(e["ts"], float) and isinstance(e["kind"], str)
        for name in ("idempotency_key", "method", "detail"):
            assert name not in e or isinstance(e[name], str), e
    old_view = [tuple(e.get(k) for k in ("index", "ts", "kind", "idempotency_key", "method", "detail"))
                for e in entries]
    assert old_view == [
        (1, 10.0, "enqueued", "ok", "add", None), (2, 11.0, "started", "ok", "add", None),
        (3, 11.5, "effect", "ok", None, "#0 step f -> 1"), (4, 12.0, "completed", "ok", "add", None),
        (5, 13.0, "enqueued", "none", "get", None), (6, 13.5, "started", "none", "get", None),
        (7, 14.0, "completed", "none", "get", None), (8, 15.0, "enqueued", "bad", "add", None),
        (9, 15.5, "started", "bad", "add", None), (10, 16.0, "failed", "bad", "add", None),
        (11, 17.0, "enqueued", "gone", "add", None), (12, 18.0, "canceled", "gone", "add", None),
        (13, 19.0, "enqueued", "later", "add", None),
        (14, 20.0, "retried", "later", "add", "attempt 2 after 0.1s: killed by SIGKILL")]
    assert backend.after_crash().oplog(A, None) == entries


def _effects_of(store: Store, agent_id: str = A) -> list[tuple[str, dict[str, Any]]]:
    return [(e["kind"], e["effect"]) for e in store.oplog(agent_id, None) if e["kind"].startswith("effect")]


def test_oplog_effects_are_structured(store):
    from golemd.model.effects import derived_key

    store.insert_invocation(inv_row("k1", status="running", started_at=100.0))
    call = {"agent": 'Inventory("main")', "method": "reserve", "args": ["hat"]}
    store.put_effect(A, "k1", 0, "call", msgpack.packb(call), 101.0)
    store.finish_effect(A, "k1", 0, _value(4), 102.0)  # it waited: effect, then effect_done
    store.put_effect(A, "k1", 1, "step", msgpack.packb({"fn": "make", "args": [1]}), 103.0,
                     result=msgpack.packb({"error": {"type": "KeyError", "message": "'x'"}}), finished_at=103.0)
    store.put_effect(A, "k1", 2, "trigger", msgpack.packb({**call, "method": "nope"}), 104.0,
                     result=msgpack.packb({"error": {"code": "UNKNOWN_METHOD", "message": "no nope"}}),
                     finished_at=104.0)
    store.put_effect(A, "k1", 3, "complete", msgpack.packb({"promise": "p-1", "value": "yes"}), 105.0,
                     result=_value(None), finished_at=105.0)
    store.put_effect(A, "k1", 4, "sleep", msgpack.packb({"seconds": 5.0}), 106.0, until=111.0)
    store.commit_now()
    (k0, asked), (k1, done), (k2, step), (k3, trigger), (k4, complete), (k5, sleep) = _effects_of(store)
    assert (k0, k1, k2, k3, k4, k5) == ("effect", "effect_done", "effect", "effect", "effect", "effect")
    key = derived_key(A, "k1", 0)
    assert asked == {"seq": 0, "kind": "call", "target": 'Inventory("main")', "callee_key": key, "request": call}
    assert done == {**asked, "result": 4}
    assert step == {"seq": 1, "kind": "step", "target": "make", "request": {"fn": "make", "args": [1]},
                    "error": {"type": "KeyError", "message": "'x'"}}
    assert trigger["error"] == {"code": "UNKNOWN_METHOD", "message": "no nope"}
    assert trigger["callee_key"] == derived_key(A, "k1", 2) and "result" not in trigger
    # a result that is nil is there all the same
    assert "result" in complete and complete["result"] is None and complete["target"] == "p-1"
    assert sleep == {"seq": 4, "kind": "sleep", "request": {"seconds": 5.0}, "until": 111.0, "waiting": True}


def test_oplog_leaves_out_values_too_large_to_show(store):
    from golemd.storage.oplog import VALUE_MAX_BYTES

    big = "x" * (VALUE_MAX_BYTES + 1)
    rowid = store.enqueue_invocation(A, "big", 0, "echo", _call("echo", big), "pending", 1.0, None, None)
    store.finish_invocation(rowid, "completed", msgpack.packb({"result": big}), 3.0, 2.0)
    store.put_effect(A, "big", 0, "step", msgpack.packb({"fn": "f", "args": [big]}), 2.5, result=_value(big),
                     finished_at=2.5)
    fits = store.enqueue_invocation(A, "fits", 1, "echo", _call("echo", "x" * 1000), "pending", 4.0, None, None)
    store.finish_invocation(fits, "completed", msgpack.packb({"result": "y" * 1000}), 5.0, 4.5)
    by = {(e["idempotency_key"], e["kind"]): e for e in store.oplog(A, None)}
    enq, done = by["big", "enqueued"], by["big", "completed"]
    assert "args" not in enq and enq["omitted"]["args"] > VALUE_MAX_BYTES
    assert "result" not in done and done["omitted"]["result"] > VALUE_MAX_BYTES
    eff = by["big", "effect"]["effect"]
    assert "request" not in eff and "result" not in eff and set(eff["omitted"]) == {"request", "result"}
    assert by["fits", "enqueued"]["args"] == ["x" * 1000] and by["fits", "completed"]["result"] == "y" * 1000
    assert "omitted" not in by["fits", "enqueued"]


def test_backend_sees_only_what_was_committed(backend: Backend):
    """The harness itself: after_crash() must not see uncommitted writes, or
    every durability test above would pass for nothing."""
    s = backend.open()
    try:
        s.insert_agent(agent_row())
        assert backend.after_crash().load_agents() == []
        s.commit_now()
        assert len(backend.after_crash().load_agents()) == 1
    finally:
        s.close()


def test_an_unattached_store_follows_whichever_loop_runs(backend):
    """Not attached (tests, tools): each asyncio loop that runs it schedules its commits."""
    s = backend.open()
    commits = backend.count_commits(s)

    async def round_of_writers(first: int) -> None:
        async def writer(i: int) -> None:
            s.insert_invocation(inv_row(f"k{i}", seq=i))
            await s.commit()

        await asyncio.wait_for(asyncio.gather(*(writer(first + i) for i in range(3))), 5)

    try:
        asyncio.run(round_of_writers(0))
        asyncio.run(round_of_writers(10))  # a new loop: the first one is closed
        assert commits() == 2
        assert len(_keys(backend.after_crash())) == 6
    finally:
        s.close()


# -- durable execution: effects and promises ---------------------------------------

def _value(v: Any) -> bytes:
    return msgpack.packb({"value": v})


def test_effects_are_journaled_in_order_and_finished_by_number(store, backend):
    store.insert_agent(agent_row(A))
    store.insert_invocation(inv_row("k1", status="running"))
    store.put_effect(A, "k1", 1, "sleep", msgpack.packb({"seconds": 5}), 10.0, until=15.0)
    store.put_effect(A, "k1", 0, "step", msgpack.packb({"fn": "f"}), 9.0, result=_value(3), finished_at=9.0)
    store.put_effect(B, "k1", 0, "step", msgpack.packb({"fn": "g"}), 9.0, result=_value(4), finished_at=9.0)
    store.commit_now()
    rows = store.load_effects(A, "k1")
    assert [(r["seq"], r["kind"], r["until"], r["result"]) for r in rows] == [
        (0, "step", None, _value(3)), (1, "sleep", 15.0, None)]
    store.finish_effect(A, "k1", 1, _value(None), 15.5)
    store.finish_effect(A, "k1", 7, _value(None), 15.5)  # unknown: nothing
    store.commit_now()
    for s in (store, backend.after_crash()):
        rows = s.load_effects(A, "k1")
        assert [(r["seq"], r["result"], r["finished_at"]) for r in rows] == [
            (0, _value(3), 9.0), (1, _value(None), 15.5)]
        assert [r["seq"] for r in s.load_effects(B, "k1")] == [0]
        assert s.load_effects(A, "other") == []


def test_an_effect_written_again_replaces_the_one_of_its_number(store):
    store.put_effect(A, "k1", 0, "call", msgpack.packb({"agent": "X()"}), 1.0)
    store.put_effect(A, "k1", 0, "call", msgpack.packb({"agent": "X()"}), 1.0, result=_value(1), finished_at=2.0)
    store.commit_now()
    assert [r["result"] for r in store.load_effects(A, "k1")] == [_value(1)]


def test_effects_show_in_the_oplog(store):
    store.insert_invocation(inv_row("k1", status="running", started_at=100.0))
    store.put_effect(A, "k1", 0, "call", msgpack.packb({"agent": "Inventory(\"main\")", "method": "reserve",
                                                        "args": ["hat"]}), 101.0, result=_value(4),
                     finished_at=102.0)
    store.put_effect(A, "k1", 1, "sleep", msgpack.packb({"seconds": 5}), 103.0, until=108.0)
    store.commit_now()
    effects = [e for e in store.oplog(A, None) if e["kind"].startswith("effect")]
    assert [e["kind"] for e in effects] == ["effect", "effect_done", "effect"]
    assert all(e["idempotency_key"] == "k1" for e in effects)
    assert 'Inventory("main").reserve' in effects[0]["detail"] and "'hat'" in effects[0]["detail"]
    assert effects[1]["detail"].endswith("-> 4")
    assert "sleep 5s" in effects[2]["detail"] and "waiting" in effects[2]["detail"]


def test_a_promise_is_completed_once(store, backend):
    store.put_promise("p1", A, "k1", 2, 50.0)
    store.put_promise("p2", B, "k9", 0, 51.0)
    store.commit_now()
    assert store.get_promise("p1")["completed_at"] is None
    assert [p["id"] for p in store.list_promises()] == ["p1", "p2"]
    assert [p["id"] for p in store.list_promises(A)] == ["p1"]
    assert store.complete_promise("p1", _value("yes"), 60.0) is True
    assert store.complete_promise("p1", _value("no"), 61.0) is False
    assert store.complete_promise("nope", _value("no"), 61.0) is False
    store.put_promise("p1", A, "k1", 2, 70.0)  # created again by a re-run: it stays as it is
    store.commit_now()
    for s in (store, backend.after_crash()):
        p = s.get_promise("p1")
        assert (p["agent_id"], p["key"], p["seq"], p["created_at"], p["completed_at"], p["value"]) == (
            A, "k1", 2, 50.0, 60.0, _value("yes"))
        assert [p["id"] for p in s.list_promises()] == ["p2"]
        assert [p["id"] for p in s.list_promises(A, pending=False)] == ["p1"]
        assert s.get_promise("nope") is None


def test_delete_agent_drops_its_effects_and_promises(store):
    for agent in (A, B):
        store.put_effect(agent, "k1", 0, "promise", msgpack.packb({}), 1.0, result=_value("p"), finished_at=1.0)
        store.put_promise(f"p-{agent}", agent, "k1", 0, 1.0)
    store.commit_now()
    store.delete_agent(A)
    store.commit_now()
    assert store.load_effects(A, "k1") == [] and store.get_promise(f"p-{A}") is None
    assert len(store.load_effects(B, "k1")) == 1 and store.get_promise(f"p-{B}") is not None


def test_prune_drops_the_effects_of_the_invocations_it_drops(store):
    for t in range(4):
        store.insert_invocation(inv_row(f"k{t}", seq=t, status="completed", finished_at=float(t)))
        store.put_effect(A, f"k{t}", 0, "step", msgpack.packb({}), float(t), result=_value(t), finished_at=float(t))
        store.put_promise(f"p{t}", A, f"k{t}", 0, float(t))
    store.insert_invocation(inv_row("open", seq=9, status="running"))
    store.put_effect(A, "open", 0, "sleep", msgpack.packb({}), 0.0, until=99.0)
    store.commit_now()
    store.prune(A, 2, 100.0)
    store.commit_now()
    assert [k for k in ("k0", "k1", "k2", "k3", "open") if store.load_effects(A, k)] == ["k2", "k3", "open"]
    assert [p["id"] for p in store.list_promises(A, pending=False)] == ["p2", "p3"]


def test_load_active_effects_reads_those_of_unfinished_invocations(store, backend):
    store.insert_invocation(inv_row("open", status="running"))
    store.insert_invocation(inv_row("done", seq=1, status="completed", finished_at=5.0))
    store.insert_invocation(inv_row("b", agent_id=B, status="pending"))
    for agent, key in ((A, "open"), (A, "done"), (B, "b")):
        store.put_effect(agent, key, 1, "sleep", msgpack.packb({}), 2.0, until=9.0)
        store.put_effect(agent, key, 0, "step", msgpack.packb({}), 1.0, result=_value(0), finished_at=1.0)
    store.commit_now()
    for s in (store, backend.after_crash()):
        active = s.load_active_effects()
        assert set(active) == {(A, "open"), (B, "b")}
        assert [(r["seq"], r["until"]) for r in active[A, "open"]] == [(0, None), (1, 9.0)]


# -- agent revert: history, snapshots per invocation, forgetting ---------------------


def test_history_is_the_finished_invocations_in_finish_order_with_their_snapshots(store, backend):
    store.insert_agent(agent_row(A))
    ids = {}
    for key, status, finished in (("k1", "completed", 3.0), ("k2", "failed", 1.0), ("k3", "canceled", 2.0),
                                  ("k4", "completed", 4.0), ("k5", "pending", None)):
        ids[key] = store.enqueue_invocation(A, key, len(ids), "m", b"\x90", "pending", 0.5, None, None)
        if finished is not None:
            store.finish_invocation(ids[key], status, msgpack.packb({"result": key}), finished, 0.7,
                                    snapshot=f"after-{key}".encode() if key == "k4" else None)
    store.commit_now()
    for s in (store, backend.after_crash()):
        rows = s.history(A)
        assert [(r["key"], r["status"], r["snapshot"]) for r in rows] == [
            ("k2", "failed", None), ("k3", "canceled", None), ("k1", "completed", None),
            ("k4", "completed", b"after-k4")]
        assert all(r["snapshot_recorded"] for r in rows)
        assert s.history(B) == []


def test_forget_invocations_drops_them_their_effects_and_promises(store):
    store.insert_agent(agent_row(A))
    for key in ("k1", "k2", "k3"):
        rowid = store.enqueue_invocation(A, key, 0, "m", b"\x90", "pending", 1.0, None, None)
        store.finish_invocation(rowid, "completed", msgpack.packb({"result": 1}), 2.0, 1.5)
        store.put_effect(A, key, 0, "promise", msgpack.packb({}), 1.0, result=_value("p"), finished_at=1.0)
        store.put_promise(f"p-{key}", A, key, 0, 1.0)
    store.enqueue_invocation(B, "k1", 0, "m", b"\x90", "completed", 1.0, None, None)
    store.commit_now()
    store.forget_invocations(A, ["k2", "k3", "unknown"])
    store.commit_now()
    assert [r["key"] for r in store.history(A)] == ["k1"]
    assert store.get_invocation(A, "k2") is None and store.get_invocation(A, "k1") is not None
    assert store.load_effects(A, "k2") == [] and len(store.load_effects(A, "k1")) == 1
    assert store.get_promise("p-k2") is None and store.get_promise("p-k1") is not None
    assert store.get_invocation(B, "k1") is not None
    # a key forgotten can be used again
    store.enqueue_invocation(A, "k2", 5, "m", b"\x90", "pending", 3.0, None, None)
    store.commit_now()
    assert store.get_invocation(A, "k2")["status"] == "pending"


def test_a_snapshot_not_kept_says_so_in_the_history(store):
    store.insert_agent(agent_row(A))
    rowid = store.enqueue_invocation(A, "big", 0, "m", b"\x90", "pending", 1.0, None, None)
    store.finish_invocation(rowid, "completed", msgpack.packb({"result": 1}), 2.0, 1.5, snapshot=None,
                            snapshot_kept=False)
    rowid = store.enqueue_invocation(A, "same", 1, "m", b"\x90", "pending", 1.0, None, None)
    store.finish_invocation(rowid, "completed", msgpack.packb({"result": 1}), 3.0, 2.5)
    store.commit_now()
    assert [(r["key"], r["snapshot"], r["snapshot_recorded"]) for r in store.history(A)] == [
        ("big", None, False), ("same", None, True)]


# -- one agent's load (a cluster node taking it over) ----------------------------------


def test_load_one_is_the_full_load_of_one_agent(store, backend):
    store.insert_agent(agent_row(A, snapshot=b"\x80s"))
    store.insert_agent(agent_row(B))
    for seq, status in [(0, "completed"), (3, "pending"), (1, "running"), (2, "scheduled")]:
        store.insert_invocation(inv_row(f"k{seq}", seq=seq, status=status))
    store.insert_invocation(inv_row("b", agent_id=B, seq=7, status="pending"))
    store.put_effect(A, "k1", 0, "step", msgpack.packb({}), 1.0, result=_value(0), finished_at=1.0)
    store.put_effect(B, "b", 0, "sleep", msgpack.packb({}), 2.0, until=9.0)
    store.commit_now()
    for s in (store, backend.after_crash()):
        one = s.load_one(A)
        assert one.row is not None and one.row["snapshot"] == b"\x80s"
        assert one.row == next(r for r in s.load_agents() if r["agent_id"] == A)
        assert one.next_seq == s.next_seqs()[A] == 4
        assert [r["key"] for r in one.active] == [r["key"] for r in s.load_active()[A]] == ["k1", "k2", "k3"]
        assert set(one.effects) == {(A, "k1")}
        assert one.effects[A, "k1"] == s.load_active_effects()[A, "k1"]
    none = store.load_one('CounterAgent("nobody")')
    assert none.row is None and none.next_seq == 0 and none.active == [] and none.effects == {}
