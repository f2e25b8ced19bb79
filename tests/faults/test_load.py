"""Load: many connections at once, too few fds, and a short soak with crashes
(RELIABILITY.md section 4, tests 21 and 29)."""

from __future__ import annotations

import asyncio
import glob
import os
import random
import resource
import signal
import time
from collections import Counter
from typing import Any

import psutil
import pytest

from golemctl.aio import AsyncClient
from golemd.model.errors import GolemError
from tests.helpers import (
    DaemonProc,
    MiB,
    daemon_process,
    running,
    settled_fds,
    wait_for,
)

pytestmark = pytest.mark.slow



def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# -- 21: a thousand clients at once -------------------------------------------------

CLIENTS = 1000
COUNTERS = 20


async def _one_client(path: str, i: int, ops: tuple[str, ...]) -> dict[str, Any]:
    """Connect with golemctl's AsyncClient, run `ops`; what happened and how long it took."""
    t0 = time.monotonic()
    out: dict[str, Any] = {"i": i, "codes": []}
    client: AsyncClient | None = None
    try:
        client = await AsyncClient.connect(path, timeout=30)
        for op in ops:
            try:
                if op == "status":
                    assert (await client.status())["pid"] > 0
                else:
                    r = await client.invoke(f'CounterAgent("load{i % COUNTERS}")', "increment")
                    assert r["result"] > 0
                    out["invoked"] = i % COUNTERS
                out["codes"].append("ok")
            except GolemError as err:  # refused with a code
                out["codes"].append(str(err.code))
                out.setdefault("messages", []).append(err.message)
    finally:
        if client is not None:
            await client.close()
        out["latency"] = time.monotonic() - t0
    return out


async def _crowd(path: str, n: int, ops: tuple[str, ...], deadline: float) -> list[Any]:
    tasks = [asyncio.ensure_future(_one_client(path, i, ops)) for i in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=deadline)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    out: list[Any] = []
    for t in tasks:
        if t not in done:
            out.append("hung")
        elif t.exception() is not None:
            out.append(repr(t.exception()))
        else:
            out.append(t.result())
    return out


def test_a_thousand_concurrent_clients_are_all_answered():
    _raise_nofile()
    with running() as d:
        c = d.conn()
        for k in range(COUNTERS):  # the workers exist before the crowd comes
            assert c.ok("invoke", agent=f'CounterAgent("load{k}")', method="increment")["result"] == 1
        c.close()
        base_fds = settled_fds(d)
        t0 = time.monotonic()
        results = asyncio.run(_crowd(d.socket, CLIENTS, ("status", "invoke"), 60))
        took = time.monotonic() - t0
        hung = [r for r in results if not isinstance(r, dict)]
        assert not hung, f"{len(hung)} clients hung or broke, e.g. {hung[:3]}"
        codes = Counter(code for r in results for code in r["codes"])
        assert set(codes) <= {"ok", "BUSY"}, codes
        latencies = [r["latency"] for r in results]
        p99 = _pct(latencies, 0.99)
        figures = (f"{CLIENTS} clients in {took:.1f}s: p50 {_pct(latencies, 0.5) * 1000:.0f} ms, "
                   f"p99 {p99 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; replies {dict(codes)}")
        print(figures)
        assert sum(codes.values()) == 2 * CLIENTS, figures  # every request answered
        assert p99 < 30, figures
        # Every acknowledged increment happened exactly once.
        per_agent = Counter(r["invoked"] for r in results if "invoked" in r)
        c = d.conn()
        for k in range(COUNTERS):
            value = c.ok("invoke", agent=f'CounterAgent("load{k}")', method="get")["result"]
            assert value == 1 + per_agent[k], (k, value, per_agent[k], figures)
        c.close()
        wait_for(lambda: daemon_process(d).num_fds() <= base_fds, 10,
                 what=f"the daemon's fds to return to {base_fds} ({figures})")


def test_accept_out_of_fds_is_logged_and_recovered_from():
    """LimitNOFILE lowered to 256 under a crowd of 400: accept() hits EMFILE,
    which is logged, and every client is still served once fds free up."""
    _raise_nofile()
    with running() as d:
        c = d.conn()
        assert c.ok("invoke", agent='CounterAgent("fd")', method="increment")["result"] == 1
        c.close()
        base_fds = settled_fds(d)
        daemon_process(d).rlimit(psutil.RLIMIT_NOFILE, (256, 256))
        results = asyncio.run(_crowd(d.socket, 400, ("status",), 60))
        hung = [r for r in results if not isinstance(r, dict)]
        assert not hung, f"{len(hung)} clients hung or broke, e.g. {hung[:3]}"
        latencies = [r["latency"] for r in results]
        assert all(r["codes"] == ["ok"] for r in results), Counter(tuple(r["codes"]) for r in results)
        log = d.log()
        assert "Too many open files" in log or "out of system resource" in log, log[-3000:]
        wait_for(lambda: daemon_process(d).num_fds() <= base_fds, 10, what=f"the daemon's fds to return to {base_fds}")
        c = d.conn()
        assert c.ok("invoke", agent='CounterAgent("fd")', method="increment")["result"] == 2
        c.close()
        print(f"400 clients with 256 fds: max latency {max(latencies):.2f}s")


def test_a_burst_of_1000_golemctl_async_clients_all_connect():
    """1,000 clients connect while the daemon is busy (stopped, here, so that
    the outcome does not depend on how fast it accepts): the listen backlog
    holds them all, and each is answered once the daemon runs again."""
    _raise_nofile()

    async def burst(path: str, pid: int) -> Counter[str]:
        os.kill(pid, signal.SIGSTOP)
        try:
            clients = await asyncio.wait_for(asyncio.gather(
                *(AsyncClient.connect(path, timeout=30) for _ in range(CLIENTS)),
                return_exceptions=True), 40)
        finally:
            os.kill(pid, signal.SIGCONT)
        outcome: Counter[str] = Counter()
        live = [c for c in clients if isinstance(c, AsyncClient)]
        outcome.update(f"connect: {c}"[:90] for c in clients if not isinstance(c, AsyncClient))
        replies = await asyncio.wait_for(asyncio.gather(*(c.status() for c in live),
                                                        return_exceptions=True), 60)
        outcome.update("ok" if isinstance(r, dict) else f"status: {r}"[:90] for r in replies)
        await asyncio.gather(*(c.close() for c in live), return_exceptions=True)
        return outcome

    with running() as d:
        assert d.proc is not None
        outcome = asyncio.run(burst(d.socket, d.proc.pid))
        assert outcome == Counter({"ok": CLIENTS}), outcome


# -- 29: a soak with crashes ------------------------------------------------------------

AGENTS = 20
PER_AGENT = 5000  # 100,000 invocations in all
WINDOW = 32  # in flight per agent


async def _soak(path: str, d: DaemonProc, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    acked: list[list[str]] = [[] for _ in range(AGENTS)]
    errors: list[str] = []
    marks: dict[str, tuple[int, int]] = {}
    total = [0]
    done = asyncio.Event()

    def sample(label: str) -> None:
        p = daemon_process(d)
        marks[label] = (int(p.memory_info().rss), int(p.num_fds()), _store_bytes(d))

    async def one_agent(a: int) -> None:
        agent = f'Journal("soak{a}")'
        client = await AsyncClient.connect(path, timeout=30)
        window = asyncio.Semaphore(WINDOW)

        async def call(key: str) -> None:
            try:
                r = await client.invoke(agent, "append", [key], idempotency_key=key)
                assert r["result"] >= 1
                acked[a].append(key)
                total[0] += 1
                if total[0] == AGENTS * PER_AGENT // 4:
                    sample("quarter")
            except GolemError as err:
                errors.append(f"{key}: {err}")
            finally:
                window.release()

        calls = []
        try:
            for n in range(PER_AGENT):
                await window.acquire()
                # Tasks start in creation order, so requests go out in key order.
                calls.append(asyncio.ensure_future(call(f"a{a}-{n:05d}")))
            await asyncio.gather(*calls)
        finally:
            await client.close()

    async def crasher() -> int:
        client = await AsyncClient.connect(path, timeout=30)
        crashes = 0
        try:
            while not done.is_set():
                try:
                    await client.request("simulate_crash", agent=f'Journal("soak{rng.randrange(AGENTS)}")')
                    crashes += 1
                except GolemError:
                    pass  # not created yet
                try:
                    await asyncio.wait_for(done.wait(), rng.uniform(0.02, 0.08))
                except TimeoutError:
                    pass
        finally:
            await client.close()
        return crashes

    chaos = asyncio.ensure_future(crasher())
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(one_agent(a) for a in range(AGENTS))), 120)
    finally:
        done.set()
        crashes = await chaos
    return {"acked": acked, "errors": errors, "marks": marks, "crashes": crashes,
            "took": time.monotonic() - t0}


def _store_bytes(d: DaemonProc) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(d.state_dir, "golemd.db*")))


def test_soak_100000_invocations_with_crashes_exactly_once():
    """RELIABILITY #29: 100,000 invocations over 20 agents while agents are
    crashed at random: every acknowledged one happened exactly once and in
    order, and memory, fds and the store's files level off (retention keeps
    1,000 outcomes per agent here, so pruning runs all along)."""
    seed = random.randrange(1 << 30)
    with running({"retention_count": 1000, "retention_seconds": 0.0}) as d:
        out = asyncio.run(_soak(d.socket, d, seed))
        took, crashes = out["took"], out["crashes"]
        figures = f"seed {seed}: {AGENTS * PER_AGENT} invocations in {took:.1f}s with {crashes} crashes"
        print(figures)
        assert not out["errors"], f"{figures}: {len(out['errors'])} failed, e.g. {out['errors'][:5]}"
        assert crashes >= 20, figures
        c = d.conn()
        for a in range(AGENTS):
            entries = c.ok("invoke", agent=f'Journal("soak{a}")', method="all")["result"]
            # Every acknowledged append happened exactly once, in the order sent.
            assert len(entries) == len(set(entries)), f"{figures}: duplicates on soak{a}"
            assert entries == out["acked"][a], f"{figures}: soak{a} lost or reordered entries"
        c.close()
        base_fds = settled_fds(d)
        rss_end = int(daemon_process(d).memory_info().rss)
        rss_q, fds_q, disk_q = out["marks"]["quarter"]
        disk_end = _store_bytes(d)
        plateau = (f"{figures}; RSS {rss_q / MiB:.0f} -> {rss_end / MiB:.0f} MiB, "
                   f"fds {fds_q} -> {base_fds}, store files {disk_q / MiB:.1f} -> {disk_end / MiB:.1f} MiB")
        print(plateau)
        assert rss_end - rss_q < 40 * MiB, plateau
        assert base_fds <= fds_q + 5, plateau
        # Three quarters more invocations, but no more rows are kept: the
        # database stays within its WAL's bound (64 MiB) of where it was.
        assert disk_end < disk_q + 64 * MiB, plateau
        # Retention held: the newest key is answered from the store, the oldest
        # was pruned and runs again.
        c = d.conn()
        a0 = 'Journal("soak0")'
        last = f"a0-{PER_AGENT - 1:05d}"
        assert c.ok("invoke", agent=a0, method="append", args=[last], idempotency_key=last)["result"] == PER_AGENT
        assert c.ok("invoke", agent=a0, method="append", args=["a0-00000"],
                    idempotency_key="a0-00000")["result"] == PER_AGENT + 1
        c.close()
