"""Suspension (idle timeout, live-worker budget), scheduled invocations, the oplog."""

from __future__ import annotations

import time

from tests.helpers import DaemonProc, running, wait_for


def test_idle_agents_are_suspended_and_resume_transparently():
    with running(args=("--idle-timeout", "0.3")) as d:
        c = d.conn()
        a = 'CounterAgent("sleepy")'
        c.ok("invoke", agent=a, method="add", args=[7])
        wait_for(lambda: c.meta(a)["status"] == "Suspended", 10, what="suspension")
        assert c.meta(a)["pid"] is None
        assert c.ok("invoke", agent=a, method="increment")["result"] == 8
        kinds = [e["kind"] for e in c.ok("oplog", agent=a)["entries"]]
        assert "suspended" in kinds and "resumed_from_snapshot" in kinds
        c.close()


def test_live_worker_budget_suspends_least_recently_used():
    with running(args=("--max-live-workers", "2")) as d:
        c = d.conn()
        names = [f'CounterAgent("lru{i}")' for i in range(5)]
        for i, a in enumerate(names):
            c.ok("invoke", agent=a, method="add", args=[i])
        wait_for(lambda: c.ok("status")["live_workers"] <= 2, 10, what="the budget to hold")
        statuses = [c.meta(a)["status"] for a in names]
        assert statuses[-1] == "Idle" and statuses[:3] == ["Suspended"] * 3
        # Every agent still has its state.
        assert [c.ok("invoke", agent=a, method="get")["result"] for a in names] == [0, 1, 2, 3, 4]
        c.close()


def test_scheduled_invocation_waits_counts_as_pending_and_can_be_canceled(conn):
    a = 'Journal("sched")'
    at = time.time() + 3.0  # room for what follows on a slow machine, before it is due
    conn.ok("invoke", agent=a, method="append", args=["later"], mode="trigger", idempotency_key="later",
            schedule_at=at)
    conn.ok("invoke", agent=a, method="append", args=["never"], mode="trigger", idempotency_key="never",
            schedule_at=time.time() + 60)
    conn.ok("invoke", agent=a, method="append", args=["now"])
    meta = conn.meta(a)
    assert meta["pending_invocation_count"] == 2
    items = conn.ok("invocations", agent=a)["invocations"]
    assert [(i["idempotency_key"], i["status"]) for i in items] == [("later", "scheduled"), ("never", "scheduled")]
    conn.ok("cancel", agent=a, idempotency_key="never")
    r = conn.ok("invoke", agent=a, method="append", args=["later"], idempotency_key="later")
    assert time.time() >= at and r["result"] == 2
    assert conn.ok("invoke", agent=a, method="all")["result"] == ["now", "later"]


def test_scheduled_invocation_keeps_its_time_across_restart(daemon: DaemonProc):
    c = daemon.conn()
    a = 'Journal("sched2")'
    at = time.time() + 1.5
    c.ok("invoke", agent=a, method="append", args=["x"], mode="trigger", idempotency_key="x", schedule_at=at)
    c.close()
    daemon.kill9()
    daemon.assert_no_strays()
    daemon.start()
    c = daemon.conn()
    assert c.meta(a)["pending_invocation_count"] == 1
    assert c.ok("invoke", agent=a, method="append", args=["x"], idempotency_key="x")["result"] == 1
    assert time.time() >= at
    c.close()


def test_delete_drops_scheduled_invocations(conn):
    a = 'Journal("sched3")'
    conn.ok("invoke", agent=a, method="append", args=["x"], mode="trigger", idempotency_key="x",
            schedule_at=time.time() + 60)
    conn.ok("delete", agent=a)
    assert conn.err("get", agent=a) == "AGENT_NOT_FOUND"


def test_oplog_records_the_agents_history(conn, tmp_path):
    a = 'Crashy("hist")'
    marker = str(tmp_path / "m")
    open(marker + ".die", "w").write("1")
    conn.ok("invoke", agent=a, method="value_now")
    conn.ok("invoke", agent=a, method="add_then_die", args=[1, marker])
    conn.ok("interrupt", agent=a)
    conn.ok("invoke", agent=a, method="value_now", mode="trigger", idempotency_key="c")
    conn.ok("cancel", agent=a, idempotency_key="c")
    conn.ok("resume", agent=a)
    entries = conn.ok("oplog", agent=a)["entries"]
    kinds = [e["kind"] for e in entries]
    for kind in ("created", "enqueued", "started", "completed", "process_died", "retried",
                 "interrupted", "canceled", "resumed"):
        assert kind in kinds, kind
    assert [e["index"] for e in entries] == list(range(1, len(entries) + 1))
    assert kinds[0] == "created"
    last3 = conn.ok("oplog", agent=a, last=3)["entries"]
    assert last3 == entries[-3:]


def test_a_burst_over_the_budget_is_trimmed_when_it_ends():
    with running(args=("--max-live-workers", "3")) as d:
        c = d.conn()
        names = [f'SlowAgent("burst{i}")' for i in range(10)]
        # All at once: every live agent is busy when the next one starts.
        ids = [c.send(op="invoke", agent=a, method="work", args=[0.3, "x"]) for a in names]
        for rid in ids:
            assert c.reply(rid)["result"] == "x"
        # Back within the budget long before the 60 s idle timeout.
        wait_for(lambda: c.ok("status")["live_workers"] <= 3, 10, what="the budget to be restored")
        c.close()


def test_the_template_keeps_spare_workers_ready():
    """A new agent's worker is a spare forked ahead of need. The template
    starts with SPARES of them and forks the next once it has handed over its
    last: one while spawns come one at a time, SPARES in a row while they
    queue up. A spare is neither an agent's worker nor an orphan to kill,
    and it goes with the daemon."""
    from golemd.host.zygote import SPARES
    from tests.helpers import daemon_process

    assert SPARES > 1
    with running() as d:
        c = d.conn()
        (template,) = daemon_process(d).children()
        names = [f'CounterAgent("spare{i}")' for i in range(SPARES + 1)]
        burst = [f'CounterAgent("burst{i}")' for i in range(3 * SPARES)]

        def others() -> set[int]:
            workers = {c.meta(a).get("pid") for a in names + burst} - {None}
            return {p.pid for p in template.children()} - workers

        wait_for(lambda: len(template.children()) == SPARES, 10, what="the first spares")
        first = {p.pid for p in template.children()}
        for a in names[:SPARES - 1]:
            assert c.ok("invoke", agent=a, method="increment")["result"] == 1
        assert {c.meta(a)["pid"] for a in names[:SPARES - 1]} < first  # spares became the workers
        assert len(others()) == 1 and others() < first  # none forked while one is left
        assert c.ok("invoke", agent=names[SPARES - 1], method="increment")["result"] == 1
        assert {c.meta(a)["pid"] for a in names[:SPARES]} == first
        wait_for(lambda: len(others()) == 1, 10, what="one new spare after the last hand-over")
        (spare,) = others()
        assert spare not in first and psutil_alive(spare)
        assert c.ok("invoke", agent=names[SPARES], method="increment")["result"] == 1
        assert c.meta(names[SPARES])["pid"] == spare

        # Many new agents at once: each gets a worker of its own, and the
        # template keeps between one and SPARES spares whatever it batched.
        for a in burst:
            c.ok("invoke", agent=a, method="increment", mode="trigger")
        for a in burst:
            assert c.ok("invoke", agent=a, method="get")["result"] == 1
        pids = [c.meta(a)["pid"] for a in names + burst]
        assert len(set(pids)) == len(pids) and None not in pids
        wait_for(lambda: 1 <= len(others()) <= SPARES, 10, what="one to SPARES spares after the burst")
        spares = others()
        for a in names + burst:
            c.ok("delete", agent=a)
        # The workers' deaths make the template sweep its children: the spares stay.
        wait_for(lambda: {p.pid for p in template.children()} == spares, 10, what="only the spares left")
        c.close()
    assert not any(psutil_alive(p) for p in spares)


def psutil_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_stops_golemd_and_its_template_quietly():
    """A terminal's Ctrl-C sends SIGINT to the whole foreground job: golemd
    and its template (which shares golemd's process group; workers have their
    own). golemd stops cleanly, the template goes with it, and nobody prints
    a KeyboardInterrupt traceback (`make run`)."""
    import os
    import signal

    import psutil

    with running(new_session=True) as d:
        assert d.proc is not None
        c = d.conn()
        c.ok("invoke", agent='CounterAgent("ctrl-c")', method="increment")  # a worker too
        c.close()
        tree = psutil.Process(d.proc.pid).children(recursive=True)
        assert any("golemd.host.zygote" in " ".join(p.cmdline()) for p in tree)
        os.killpg(d.proc.pid, signal.SIGINT)
        assert d.proc.wait(timeout=30) == 0, d.log()
        wait_for(lambda: not any(psutil_alive(p.pid) for p in tree), timeout=10,
                 what="golemd's template and workers to exit")
        log = d.log()
        assert "KeyboardInterrupt" not in log and "Traceback" not in log, log
