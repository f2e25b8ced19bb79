"""A world for the engine to live in, without processes, sockets, SQLite or asyncio.

- `FakeStore` is the journal (golemd.engine.journal.Journal) in memory: rows
  by (agent, key), one open transaction that reads see, `commit()` that
  applies it and calls the on_commit callbacks with None, and
  `fail_next_commit()` that makes the next commit roll back and call them
  with STORAGE_FULL. write_before_commit callbacks run just before a commit,
  once per name, as the SQLite store does; write_later ones wait for
  `flush_later()` (the store's timer) or a commit that writes their name.
  An agent's row reads rolled forward (`agent_row`), as the stores read it.
- `FakeClock` is a float that a test advances.
- `World` plays the driver (golemd.driver.agent) and the supervisor's
  admission (golemd.driver.supervisor): it turns each engine's effects into
  pending world events (a worker being built, a call awaiting its reply, a
  stopped worker about to die, timers with due times) which a test then
  steps explicitly: `world.ready()`, `world.reply(42)`, `world.raise_()`,
  `world.crash()`, `world.die()`, `world.fire(Timer.RETRY)`,
  `world.advance(5)`, `world.commit()`. With ctx.batch > 0 (World(batch=))
  the worker holds the calls sent ahead behind the one it runs, and
  `world.cancel` drops one of them as golemd.driver.agent does (Sim.cancel).
  `world.restart()` is a kill -9 of the daemon and its recovery from what
  the store committed.

While it carries effects out the world checks the rules every effect must
keep (no second Spawn while a worker exists, a Send only to a worker that is
built and not being stopped, one call at a time, a Stop only with a worker),
and while it answers callers it checks that nobody is answered twice and
that no outcome reaches a caller before it is committed. Effect violations
raise at once; answer violations (raised inside the engine's callbacks,
which swallow exceptions) are collected in `world.violations`, which the
`world` fixture checks at teardown.

A worker's state is the list of idempotency keys of the calls it applied:
a reply ok appends its key, and the snapshot it returns encodes the list.
So `world.saved_state()` (the committed snapshot) shows exactly which calls
took effect, and in which order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from golemd.engine import control
from golemd.engine.context import EngineContext, Policy
from golemd.engine.control import AgentEngine
from golemd.engine.effects import Arm, Effect, Idle, Send, Spawn, Stop, Timer
from golemd.model.errors import Code, GolemError
from golemd.model.invocation import Invocation
from golemd.model.states import AgentStatus
from golemd.model.states import InvocationStatus as S
from golemd.storage.rollforward import roll_forward
from golemd.wire.codec import pack

AGENT = 'Counter("c1")'
T0 = 1_700_000_000.0

# Errors that are an invocation's outcome: stored with it, and told only after its commit.
OUTCOME_CODES = frozenset({Code.INVOCATION_FAILED, Code.AGENT_DIED, Code.AGENT_FAILED, Code.TIMEOUT,
                           Code.PROTOCOL_ERROR, Code.SNAPSHOT_FAILED})


def storage_full() -> GolemError:
    return GolemError(Code.STORAGE_FULL, "database or disk is full (fake)")


def encode_state(keys: list[str]) -> bytes:
    return ("state:" + ",".join(keys)).encode()


def decode_state(snapshot: bytes | None) -> list[str]:
    if snapshot is None:
        return []
    text = snapshot.decode()
    assert text.startswith("state:"), text
    return [k for k in text[len("state:"):].split(",") if k]


def unpack(data: bytes | None) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False) if data else None


# -- the clock ---------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.t += seconds


# -- the journal -------------------------------------------------------------


@dataclass
class Tables:
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    invocations: dict[int, dict[str, Any]] = field(default_factory=dict)  # by rowid
    events: list[dict[str, Any]] = field(default_factory=list)

    def copy(self) -> Tables:
        return Tables({k: dict(v) for k, v in self.agents.items()},
                      {k: dict(v) for k, v in self.invocations.items()}, list(self.events))

    def find(self, agent_id: str, key: str) -> dict[str, Any] | None:
        for row in self.invocations.values():
            if row["agent_id"] == agent_id and row["key"] == key:
                return row
        return None


class FakeStore:
    """The Journal protocol in memory, plus the few writes the supervisor makes
    (insert_agent, enqueue_invocation, delete_agent)."""

    def __init__(self) -> None:
        self.committed = Tables()
        self._txn: Tables | None = None  # the open transaction: what reads see
        self._callbacks: list[Callable[[GolemError | None], None]] = []
        self._deferred: dict[str, Callable[[], None]] = {}
        self._later: dict[str, Callable[[], None]] = {}
        self._fail_next = False
        self._fail_next_write = False
        self.commits = 0
        self.failed_commits = 0
        self.commit_wanted = False  # commit_soon() was asked since the last commit
        self.writes: list[tuple[Any, ...]] = []  # every write ever made, for tests to read

    # -- the transaction --

    @property
    def in_txn(self) -> bool:
        return self._txn is not None

    @property
    def view(self) -> Tables:
        return self._txn if self._txn is not None else self.committed

    def _write(self, *what: Any) -> Tables:
        self.writes.append(what)
        if self._fail_next_write:
            # As SQLite on a full disk: the statement fails and the whole
            # transaction is rolled back; whoever waited on it is told.
            self._fail_next_write = False
            self._txn = None
            self._deferred.clear()
            err = storage_full()
            callbacks, self._callbacks = self._callbacks, []
            for fn in callbacks:
                fn(err)
            raise err
        if self._txn is None:
            self._txn = self.committed.copy()
        return self._txn

    def fail_next_commit(self) -> None:
        self._fail_next = True

    def crash(self) -> None:
        """The daemon is killed (kill -9): the open transaction is lost, with
        the writes waiting for a commit (before it or later) and whoever
        waited on it (never called). What was committed stays."""
        self._txn = None
        self._callbacks = []
        self._deferred = {}
        self._later = {}
        self._fail_next = self._fail_next_write = False
        self.commit_wanted = False

    def fail_next_write(self) -> None:
        self._fail_next_write = True

    def commit(self) -> GolemError | None:
        """Run the deferred writes, commit (or roll back), then call back:
        callbacks registered meanwhile wait for the next commit."""
        deferred, self._deferred = self._deferred, {}
        for write in deferred.values():
            write()
        callbacks, self._callbacks = self._callbacks, []
        self.commit_wanted = False
        err: GolemError | None = None
        if self._txn is not None:
            if self._fail_next:
                err = storage_full()
                self.failed_commits += 1
            else:
                self.committed = self._txn
                self.commits += 1
            self._txn = None
        self._fail_next = False
        for fn in callbacks:
            fn(err)
        return err

    # -- Journal --

    def event(self, agent_id: str, ts: float, kind: str, key: str | None = None,
              method: str | None = None, detail: str | None = None) -> None:
        t = self._write("event", agent_id, kind, key)
        t.events.append({"agent_id": agent_id, "ts": ts, "kind": kind, "key": key, "method": method,
                         "detail": detail})

    def update_agent(self, agent_id: str, **cols: Any) -> None:
        t = self._write("update_agent", agent_id, cols)
        if agent_id in t.agents:  # an UPDATE of no row changes nothing
            t.agents[agent_id].update(cols)

    def update_invocation(self, agent_id: str, key: str, **cols: Any) -> None:
        t = self._write("update_invocation", agent_id, key, cols)
        row = t.find(agent_id, key)
        if row is not None:
            row.update(cols)

    def finish_invocation(self, rowid: int, status: str, outcome: bytes, finished_at: float,
                          started_at: float | None, snapshot: bytes | None = None,
                          snapshot_kept: bool = True, fin: int | None = None) -> None:
        t = self._write("finish_invocation", rowid, status)
        row = t.invocations.get(rowid)
        if row is not None:
            row.update(status=status, outcome=outcome, finished_at=finished_at, started_at=started_at,
                       snapshot=snapshot, snapshot_recorded=snapshot_kept, fin=fin)

    def history(self, agent_id: str) -> list[dict[str, Any]]:
        t = self.view
        done = [r for r in t.invocations.values() if r["agent_id"] == agent_id
                and r.get("finished_at") is not None and r["status"] in ("completed", "failed", "canceled")]
        return [dict(r) for r in sorted(done, key=lambda r: (r["finished_at"], r["id"]))]

    def forget_invocations(self, agent_id: str, keys: list[str]) -> None:
        t = self._write("forget_invocations", agent_id, list(keys))
        for rowid in [i for i, r in t.invocations.items() if r["agent_id"] == agent_id and r["key"] in keys]:
            del t.invocations[rowid]

    def write_before_commit(self, name: str, write: Callable[[], None]) -> None:
        self._later.pop(name, None)
        self._deferred[name] = write

    def write_later(self, name: str, write: Callable[[], None]) -> None:
        if name in self._deferred:
            self._deferred[name] = write
        else:
            self._later[name] = write

    def flush_later(self) -> GolemError | None:
        """The store's timer for write_later: those writes, in a commit."""
        later, self._later = self._later, {}
        for name, write in later.items():
            self._deferred.setdefault(name, write)
        return self.commit()

    def on_commit(self, fn: Callable[[GolemError | None], None]) -> None:
        if self._txn is None:
            fn(None)  # nothing written: durable already (as the SQLite store)
            return
        self._callbacks.append(fn)

    def commit_soon(self) -> None:
        self.commit_wanted = True

    def get_invocation(self, agent_id: str, key: str) -> dict[str, Any] | None:
        row = self.view.find(agent_id, key)
        return dict(row) if row is not None else None

    def saved_snapshot(self, agent_id: str) -> bytes | None:
        row = self.agent_row(agent_id, committed=False)
        return row.get("snapshot") if row else None

    def agent_row(self, agent_id: str, committed: bool = True) -> dict[str, Any] | None:
        """The agent's row rolled forward over its later-written completions
        (golemd.storage.rollforward): what recovery would read."""
        tables = self.committed if committed else self.view
        row = tables.agents.get(agent_id)
        if row is None:
            return None
        row = {"completed_count": 0, "fin_upto": 0, "snapshot": None, **row}
        lazy = sorted((r for r in tables.invocations.values() if r["agent_id"] == agent_id
                       and r.get("fin") is not None and r["fin"] > row["fin_upto"]), key=lambda r: r["fin"])
        return roll_forward(row, lazy)

    def prune(self, agent_id: str, keep: int, older_than: float) -> int:
        t = self._write("prune", agent_id)
        done = sorted((r for r in t.invocations.values() if r["agent_id"] == agent_id
                       and r.get("finished_at") is not None), key=lambda r: -r["finished_at"])
        doomed = [r["id"] for r in done[keep:] if r["finished_at"] <= older_than]
        for rowid in doomed:
            del t.invocations[rowid]
        return len(doomed)

    # -- what the supervisor writes --

    def insert_agent(self, row: dict[str, Any]) -> None:
        t = self._write("insert_agent", row["agent_id"])
        t.agents[row["agent_id"]] = dict(row)

    def enqueue_invocation(self, agent_id: str, key: str, seq: int, method: str, args: bytes,
                           status: str, created_at: float, schedule_at: float | None,
                           timeout: float | None) -> int:
        t = self._write("enqueue_invocation", agent_id, key)
        old = t.find(agent_id, key)
        if old is not None:  # INSERT OR REPLACE
            del t.invocations[old["id"]]
        rowid = max(t.invocations, default=0) + 1  # as SQLite: a rolled-back id is given again
        t.invocations[rowid] = {"id": rowid, "agent_id": agent_id, "key": key, "seq": seq,
                                "method": method, "args": args, "status": status,
                                "created_at": created_at, "schedule_at": schedule_at,
                                "timeout": timeout, "outcome": None, "finished_at": None,
                                "started_at": None}
        return rowid

    def delete_agent(self, agent_id: str) -> None:
        t = self._write("delete_agent", agent_id)
        t.agents.pop(agent_id, None)
        t.invocations = {k: r for k, r in t.invocations.items() if r["agent_id"] != agent_id}
        t.events = [e for e in t.events if e["agent_id"] != agent_id]

    # -- for tests --

    def row(self, agent_id: str, key: str, committed: bool = True) -> dict[str, Any] | None:
        tables = self.committed if committed else self.view
        row = tables.find(agent_id, key)
        return dict(row) if row is not None else None

    def outcome(self, agent_id: str, key: str) -> Any:
        """The committed outcome of a key: {"result": ...} or {"error": {...}}, or None."""
        row = self.row(agent_id, key)
        return unpack(row["outcome"]) if row else None

    def committed_snapshot(self, agent_id: str) -> bytes | None:
        row = self.agent_row(agent_id)
        return row.get("snapshot") if row else None

    def events_of(self, agent_id: str, committed: bool = True) -> list[str]:
        tables = self.committed if committed else self.view
        return [e["kind"] for e in tables.events if e["agent_id"] == agent_id]


# -- callers -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    value: Any
    error: GolemError | None


class Caller:
    """One client's request: awaited (told the outcome) or triggered (told
    the enqueue's commit). Its `answers` should hold exactly one Answer once
    it is answered."""

    def __init__(self, world: World, agent: str, key: str, mode: str) -> None:
        self.world = world
        self.agent = agent
        self.key = key
        self.mode = mode
        self.answers: list[Answer] = []
        self.inv: Invocation | None = None  # the invocation it waits on, if any

    def __repr__(self) -> str:
        return f"Caller({self.key!r}, {self.mode}, {self.answers})"

    def waiter(self, value: Any, error: GolemError | None) -> None:
        """Attached to an invocation's waiters: the engine answers through it."""
        self.world.check_answer(self, value, error)
        self.answers.append(Answer(value, error))

    def refuse(self, error: GolemError) -> None:
        """Answered by the admission, not by the engine."""
        self.answers.append(Answer(None, error))

    def ack(self, value: Any) -> None:
        self.answers.append(Answer(value, None))

    @property
    def answered(self) -> bool:
        return bool(self.answers)

    @property
    def answer(self) -> Answer:
        assert len(self.answers) == 1, f"{self.key}: answered {len(self.answers)} times: {self.answers}"
        return self.answers[0]

    @property
    def value(self) -> Any:
        ans = self.answer
        assert ans.error is None, f"{self.key}: got an error, not a value: {ans.error}"
        return ans.value

    @property
    def error(self) -> GolemError:
        ans = self.answer
        assert ans.error is not None, f"{self.key}: got {ans.value!r}, not an error"
        return ans.error

    @property
    def code(self) -> str:
        return self.error.code


# -- workers and the driver ----------------------------------------------------


@dataclass(eq=False)
class Worker:
    """A worker as the world sees it: spawning (Spawn taken, worker_spawned
    not yet told), building (told, agent not built yet), ready.

    `calls` are the calls sent to it and not answered, as (call id, inv), in
    the order it runs them: the first is the one it runs (`call`), the others
    were sent ahead (batch_calls) and have not started. A drop of one of
    those (golemd.host.runtime._drop) takes it and every later one out; the
    worker answers each `dropped`, after the reply of the call it runs
    (`dropped_after_reply`), or at once when it saw the drop between a reply
    and the next call (`written`: read by `Sim.read_worker`, or before any
    later reply)."""

    snapshot: bytes | None
    generation: int
    state: list[str]
    phase: str = "spawning"
    stopped: Stop | None = None  # the Stop asked, if any (a now-Stop wins over a polite one)
    lost: bool = False  # worker_lost told; reap() tells worker_exited
    calls: list[tuple[int, Invocation]] = field(default_factory=list)  # sent, not answered
    dropped_after_reply: list[tuple[int, Invocation]] = field(default_factory=list)
    written: list[tuple[int, Invocation]] = field(default_factory=list)  # `dropped` answers not read yet
    crashed: bool = False  # it died by itself (crash()), not after a Stop (die())
    protocol_error: bool = False  # it broke the control protocol

    @property
    def call(self) -> Invocation | None:
        """The call it runs (sent, not replied), if any."""
        return self.calls[0][1] if self.calls else None

    @property
    def ahead(self) -> list[Invocation]:
        """The calls sent behind the one it runs, not started."""
        return [inv for _cid, inv in self.calls[1:]]

    def drop(self, cid: int) -> list[tuple[int, Invocation]]:
        """Drop call `cid` and those after it if it has not started (it is
        not the first): what it dropped, in order."""
        for i, (other, _inv) in enumerate(self.calls):
            if other == cid and i > 0:
                dropped, self.calls = self.calls[i:], self.calls[:i]
                return dropped
        return []


class EffectError(AssertionError):
    """The engine asked for an effect its driver could not carry out."""


class Sim:
    """One engine and the worker, timers and effects the driver holds for it."""

    def __init__(self, world: World, name: str, durable: bool,
                 row: dict[str, Any] | None = None) -> None:
        self.world = world
        self.name = name
        self.durable = durable
        self.eng = AgentEngine(world.ctx, world.store, name, name.split("(")[0], durable, row)
        self.worker: Worker | None = None
        self.timers: dict[Timer, float] = {}  # armed, by due time
        self.effects: list[Effect] = []  # all effects carried out, oldest first
        self.sent: list[str] = []  # keys of every Send, oldest first
        self.spawns: list[bytes | None] = []  # snapshot of every Spawn
        self.stops: list[Stop] = []
        self.stopped_starts = 0  # workers stopped before they were built, since the last built one
        self.idles = 0
        self._call_ids = 0

    def __repr__(self) -> str:
        return f"Sim({self.name}, {self.eng.status}, worker={self.worker})"

    # -- the driver: carry out what the engine asked --

    def apply(self) -> None:
        eng = self.eng
        while eng.out:
            for eff in eng.take():
                self.effects.append(eff)
                if isinstance(eff, Spawn):
                    if self.worker is not None:
                        raise EffectError(f"Spawn while a worker is {self.worker.phase}"
                                          f"{' and lost' if self.worker.lost else ''}")
                    self.spawns.append(eff.snapshot)
                    self.worker = Worker(eff.snapshot, self.world.ctx.generation,
                                         decode_state(eff.snapshot))
                elif isinstance(eff, Send):
                    w = self.worker
                    if w is None or w.phase != "ready" or w.stopped is not None or w.lost:
                        raise EffectError(f"Send({eff.inv.key}) to a worker that cannot take it: {w}")
                    if eff.ahead and w.call is None:
                        # With nothing to run before it, the worker would start it at once.
                        raise EffectError(f"Send({eff.inv.key}, ahead) with nothing running")
                    if not eff.ahead and w.call is not None:
                        raise EffectError(f"Send({eff.inv.key}) while {w.call.key} is running")
                    if eff.ahead and len(w.calls) > self.world.ctx.batch:
                        raise EffectError(f"Send({eff.inv.key}, ahead) beyond the batch: {w.ahead}")
                    if any(inv is eff.inv for _cid, inv in w.calls):
                        raise EffectError(f"Send({eff.inv.key}) while it is out already")
                    self._call_ids += 1
                    eff.inv.call_id = self._call_ids
                    w.calls.append((self._call_ids, eff.inv))
                    self.sent.append(eff.inv.key)
                elif isinstance(eff, Stop):
                    if self.worker is None:
                        raise EffectError("Stop with no worker")
                    self.stops.append(eff)
                    if self.worker.stopped is None and self.worker.phase != "ready":
                        self.stopped_starts += 1
                    if self.worker.stopped is None or eff.now:
                        self.worker.stopped = eff
                elif isinstance(eff, Arm):
                    if eff.delay is None:
                        self.timers.pop(eff.timer, None)
                    else:
                        assert eff.delay >= 0, eff
                        self.timers[eff.timer] = self.world.clock() + eff.delay
                elif isinstance(eff, Idle):
                    self.idles += 1

    # -- what a worker does --

    def spawned(self) -> None:
        """The worker's process exists (worker_spawned)."""
        w = self._worker("spawning")
        w.phase = "building"
        self.eng.worker_spawned()
        self.apply()

    def ready(self) -> None:
        """The worker's agent is built (worker_spawned if not told yet, then worker_ready)."""
        w = self._worker("spawning", "building")
        if w.phase == "spawning":
            self.spawned()
        assert w.stopped is None or not w.stopped.now, "a killed worker builds nothing"
        w.phase = "ready"
        self.stopped_starts = 0
        self.eng.worker_ready(f"pid {id(w)}" if w.snapshot is not None else None)
        self.apply()

    def constructor_fails(self, type_: str = "ValueError", message: str = "bad args") -> None:
        w = self._worker("spawning", "building")
        if w.phase == "spawning":
            self.spawned()
        self.eng.constructor_failed({"type": type_, "message": message, "traceback": "Traceback..."})
        self.apply()

    def spawn_fails(self, why: str = "the template is gone") -> None:
        self._worker("spawning")
        self.worker = None
        self.eng.spawn_failed(why)
        self.apply()

    @property
    def call(self) -> Invocation | None:
        """The call sent to the worker and not replied to yet."""
        return self.worker.call if self.worker is not None else None

    def _take_call(self) -> Invocation:
        w = self._worker("ready")
        assert w.calls, "no call is out to the worker"
        self.read_worker()  # what it wrote before this reply is read first
        return w.calls.pop(0)[1]

    def _replied(self, inv: Invocation, reply: dict[str, Any]) -> None:
        """The engine reads the reply, then the `dropped` answers the worker
        wrote after it (drops it read once it had replied)."""
        w = self.worker
        assert w is not None
        self.eng.replied(inv, reply)
        self.apply()
        w.written += w.dropped_after_reply
        w.dropped_after_reply = []
        self.read_worker()

    def read_worker(self) -> None:
        """The engine reads the `dropped` answers the worker wrote: each is
        told, unless that invocation was sent again since (another call id)."""
        w = self.worker
        while w is not None and w.written:
            cid, inv = w.written.pop(0)
            if inv.call_id == cid:
                self.eng.dropped(inv)
                self.apply()

    def reply(self, value: Any = None, snapshot: Any = ...) -> Invocation:
        """The call out returns `value`; the worker's state takes its key."""
        inv = self._take_call()
        w = self.worker
        assert w is not None
        if snapshot is ...:
            w.state = [*w.state, inv.key]
            snapshot = encode_state(w.state) if self.durable else None
        self._replied(inv, {"ok": True, "result": value, "snapshot": snapshot})
        return inv

    def raise_(self, type_: str = "ValueError", message: str = "boom",
               code: str = Code.INVOCATION_FAILED.value) -> Invocation:
        """The method raised (its state rolled back in the worker)."""
        inv = self._take_call()
        self._replied(inv, {"ok": False, "code": code,
                            "error": {"type": type_, "message": message, "traceback": "Traceback..."}})
        return inv

    def cancel(self, key: str, reply_first: Any = None, worker_saw_drop: bool = False) -> None:
        """golemd.driver.agent.Agent.cancel: one sent ahead is dropped in the
        worker first (`drop`), then canceled; the drop is settled once the
        cancel commits. `reply_first` (a value, or an Exception for a raise):
        the worker had replied to the call it ran before the drop came, and
        that reply is read while the driver polls; `worker_saw_drop`: it
        read the drop before it started the next (else that one started)."""
        eng = self.eng
        inv = eng.queue.active.get(key)
        dropped = inv is not None and inv in eng.queue.ahead and self.drop(inv, reply_first, worker_saw_drop)
        try:
            control.cancel(eng, key)
        finally:
            self.apply()

        def committed(_err: GolemError | None) -> None:
            if dropped and inv is not None:
                eng.drop_settled(inv)
            self.apply()

        self.world.store.on_commit(committed)

    def drop(self, inv: Invocation, reply_first: Any = None, worker_saw_drop: bool = False) -> bool:
        """golemd.driver.agent.Agent._drop: ask the worker to drop `inv` (sent
        ahead) and those after it, and read what it wrote before. True if
        the drop is sure to win."""
        w = self.worker
        if w is None or w.lost:
            return False
        eng = self.eng
        eng.dropping(inv)
        try:
            if reply_first is not None and w.phase == "ready" and w.calls:
                if isinstance(reply_first, Exception):
                    self.raise_()
                else:
                    self.reply(reply_first)
                if worker_saw_drop:
                    # Between that reply and the next call it read the drop.
                    for i, (_cid, other) in enumerate(w.calls):
                        if other is inv:
                            w.written += w.calls[i:]
                            w.calls = w.calls[:i]
                            break
            # It reads the drop once it has replied to the call it runs.
            w.dropped_after_reply += w.drop(inv.call_id)
        finally:
            eng.polled()
        self.apply()
        return inv in eng.queue.ahead

    def unsend(self) -> None:
        """golemd.driver.agent.Agent.unsend (a drain, a reload): what was sent
        ahead is dropped in the worker, then taken back."""
        eng = self.eng
        first = eng.to_unsend()
        if first is not None and self.drop(first):
            eng.unsend()
            eng.drop_settled(first)
        self.apply()

    def crash(self, why: str = "killed by SIGSEGV", protocol_error: bool = False,
              reap: bool = True) -> None:
        """The worker dies by itself."""
        w = self._worker("spawning", "building", "ready")
        assert w.stopped is None, "it was stopped: use die()"
        w.crashed, w.protocol_error = True, protocol_error
        self._death(w, why, protocol_error, reap)

    def die(self, why: str = "killed by SIGKILL", reap: bool = True) -> None:
        """A worker the engine stopped dies."""
        w = self._worker("spawning", "building", "ready")
        assert w.stopped is not None, "it was not stopped: use crash()"
        self._death(w, why, False, reap)

    def _death(self, w: Worker, why: str, protocol_error: bool, reap: bool) -> None:
        assert not w.lost, "it is dead already: reap() it"
        if w.phase == "spawning":
            self.spawned()  # the driver tells worker_spawned before its death
        w.lost = True
        w.calls, w.dropped_after_reply, w.written = [], [], []
        self.eng.worker_lost()
        self.apply()
        if reap:
            self.reap(why, protocol_error)

    def reap(self, why: str = "killed by SIGKILL", protocol_error: bool | None = None) -> None:
        w = self.worker
        assert w is not None and w.lost, "no dead worker to reap"
        self.worker = None
        self.eng.worker_exited(why, w.protocol_error if protocol_error is None else protocol_error)
        self.apply()

    def fire(self, timer: Timer) -> None:
        """The timer fires (the clock moves on to its due time if it is later)."""
        assert timer in self.timers, f"{timer} is not armed (armed: {sorted(t.name for t in self.timers)})"
        due = self.timers.pop(timer)
        clock = self.world.clock
        clock.t = max(clock.t, due)
        self.eng.timer_fired(timer)
        self.apply()

    # -- looking --

    def _worker(self, *phases: str) -> Worker:
        w = self.worker
        assert w is not None, "no worker"
        assert w.phase in phases, f"the worker is {w.phase}, not {' or '.join(phases)}"
        return w

    def armed(self, timer: Timer) -> float | None:
        """In how many seconds `timer` fires (None: not armed)."""
        due = self.timers.get(timer)
        return None if due is None else due - self.world.clock()

    def arms(self, timer: Timer) -> list[float | None]:
        """Every delay `timer` was armed with, oldest first (None: a cancel)."""
        return [e.delay for e in self.effects if isinstance(e, Arm) and e.timer is timer]

    @property
    def status(self) -> AgentStatus:
        return self.eng.status


class World:
    """A clock, a store, a context, and the agents living in them.

    The default agent (`world.sim`, name AGENT) is made at once; the worker
    methods (ready, reply, crash, fire...) act on it. Other agents: `world.sim_of(name)`
    or pass `agent=`.
    """

    def __init__(self, policy: Policy | None = None, durable: bool = True, name: str = AGENT,
                 batch: int = 0) -> None:
        self.clock = FakeClock()
        self.ctx = EngineContext(policy=policy or Policy(), clock=self.clock, batch=batch)
        self.store = FakeStore()
        self.durable = durable
        self.default = name
        self.agents: dict[str, Sim] = {}  # live agents by name (deleted ones leave)
        self.sims: list[Sim] = []  # every engine ever made, deleted ones too
        self.callers: list[Caller] = []
        self.violations: list[str] = []
        self._keys = 0
        self.create(name)
        self.store.commit()

    # -- agents --

    def create(self, name: str, durable: bool | None = None) -> Sim:
        """A new agent, as the supervisor makes one (its row and event written)."""
        assert name not in self.agents
        sim = Sim(self, name, self.durable if durable is None else durable)
        self.agents[name] = sim
        self.sims.append(sim)
        self.store.insert_agent({"agent_id": name, "created_at": sim.eng.created_at,
                                 "last_active_at": sim.eng.last_active_at})
        sim.eng.event("created")
        return sim

    @property
    def sim(self) -> Sim:
        return self.agents[self.default]

    @property
    def eng(self) -> AgentEngine:
        return self.sim.eng

    def sim_of(self, agent: str | None) -> Sim:
        return self.agents[agent or self.default]

    # -- the supervisor's admission (golemd.driver.supervisor._submit) --

    def invocation(self, key: str | None = None, *args: Any, method: str = "incr", agent: str | None = None,
                   schedule_at: float | None = None, timeout: float | None = None) -> Invocation:
        """A new invocation for `agent`, not yet journaled, as the supervisor builds one."""
        eng = self.sim_of(agent).eng
        now = self.clock()
        return Invocation(key=key or self.new_key(), method=method, args=list(args),
                          args_packed=pack([method, list(args)]), seq=eng.take_seq(), created_at=now,
                          status=S.SCHEDULED if schedule_at and schedule_at > now else S.PENDING,
                          schedule_at=schedule_at, timeout=timeout, journaled=False)

    def new_key(self) -> str:
        self._keys += 1
        return f"k{self._keys}"

    def invoke(self, key: str | None = None, *args: Any, method: str = "incr", mode: str = "await",
               agent: str | None = None, schedule_at: float | None = None,
               timeout: float | None = None, early: bool = True) -> Caller:
        """An invoke request, through the supervisor's rules: idempotency,
        refusals, early start of an awaited call to an idle warm agent, the
        enqueue journaled and the invocation told once it commits. `early=False`
        never starts early."""
        name = agent or self.default
        key = key or self.new_key()
        caller = Caller(self, name, key, mode)
        self.callers.append(caller)
        try:
            self._submit(caller, name, key, method, list(args), mode, schedule_at, timeout, early)
        except GolemError as err:
            caller.refuse(err)
        for sim in list(self.agents.values()):
            sim.apply()
        return caller

    def trigger(self, key: str | None = None, *args: Any, **kw: Any) -> Caller:
        return self.invoke(key, *args, mode="trigger", **kw)

    def _submit(self, caller: Caller, name: str, key: str, method: str, args: list[Any], mode: str,
                schedule_at: float | None, timeout: float | None, early_ok: bool) -> None:
        if self.ctx.draining:
            raise GolemError(Code.SHUTTING_DOWN, "the daemon is stopping and accepts no new invocations")
        args_packed = pack([method, args])
        sim = self.agents.get(name)
        if sim is not None and self._existing(sim, caller, key, args_packed, mode):
            return
        if sim is not None and sim.eng.failed_error is not None:
            raise GolemError.from_wire(sim.eng.failed_error)
        created = sim is None
        if sim is None:
            sim = self.create(name)
        eng, store = sim.eng, self.store
        inv = self.invocation(key, *args, method=method, agent=name, schedule_at=schedule_at,
                              timeout=timeout)
        early = early_ok and mode == "await" and inv.status == S.PENDING and eng.ready_warm()
        if mode == "await":
            caller.inv = inv
            inv.waiters.append(caller.waiter)
        if early:
            eng.start_early(inv)
            sim.apply()
        try:
            inv.rowid = store.enqueue_invocation(name, key, inv.seq, method, args_packed, inv.status.value,
                                                 inv.created_at, schedule_at, timeout)
        except GolemError as err:
            if early:
                control.withdraw(eng, inv, err)
                sim.apply()
                return
            if mode == "await":
                inv.waiters.clear()
            self._forget_if_new(sim, created)
            raise
        if not early:
            eng.enqueue(inv)
            sim.apply()

        def journaled(err: GolemError | None) -> None:
            if err is not None:
                control.withdraw(eng, inv, err)
                sim.apply()
                self._forget_if_new(sim, created)
                if mode != "await":
                    caller.refuse(err)
                return
            inv.journaled = True
            if mode != "await":
                self._ack(caller, {"idempotency_key": key, "status": "pending"})
            eng.journaled(inv)
            sim.apply()

        store.on_commit(journaled)

    def _existing(self, sim: Sim, caller: Caller, key: str, args_packed: bytes, mode: str) -> bool:
        """golemd.driver.supervisor._existing: True when the key is known."""
        inv = sim.eng.queue.active.get(key)
        if inv is not None:
            if inv.args_packed != args_packed:
                raise self._conflict(key)
            if mode == "await":
                caller.inv = inv
                inv.waiters.append(caller.waiter)
            else:
                ack = {"idempotency_key": key, "status": "running" if inv.status == S.RUNNING else "pending"}
                if inv.journaled:
                    self._ack(caller, ack)
                else:
                    self.store.on_commit(lambda err: caller.refuse(err) if err else self._ack(caller, ack))
            return True
        row = self.store.get_invocation(sim.name, key)
        if row is None:
            return False
        if bytes(row["args"]) != args_packed:
            raise self._conflict(key)
        if row["status"] == S.CANCELED.value:
            raise GolemError(Code.CANCELED, f"invocation {key!r} was canceled")
        if row["status"] not in (S.COMPLETED.value, S.FAILED.value):
            raise GolemError(Code.STORAGE_FULL, f"invocation {key!r} ran but its outcome could not be saved")
        outcome = unpack(row["outcome"]) or {}
        if "error" in outcome:
            raise GolemError.from_wire(outcome["error"])
        if mode == "await":
            caller.ack(outcome.get("result"))
        else:
            caller.ack({"idempotency_key": key, "status": "completed", "result": outcome.get("result")})
        return True

    def _ack(self, caller: Caller, value: Any) -> None:
        sim = self.agents.get(caller.agent)
        deleted = sim is None or sim.eng.deleted
        if not deleted and self.store.row(caller.agent, caller.key) is None:
            self.violations.append(f"{caller.key}: acknowledged before its enqueue was committed")
        caller.ack(value)

    @staticmethod
    def _conflict(key: str) -> GolemError:
        return GolemError(Code.IDEMPOTENCY_CONFLICT, f"idempotency key {key!r} was already used "
                          "with other arguments")

    def _forget_if_new(self, sim: Sim, created: bool) -> None:
        eng = sim.eng
        if created and not eng.queue.active and eng.current is None and self.agents.get(sim.name) is sim:
            del self.agents[sim.name]

    # -- answers: the rules every answer keeps --

    def check_answer(self, caller: Caller, value: Any, error: GolemError | None) -> None:
        if caller.answers:
            self.violations.append(f"{caller.key}: answered twice: {caller.answers[0]} then "
                                   f"{Answer(value, error)}")
        if error is not None and error.code not in OUTCOME_CODES:
            return  # canceled, interrupted, refused...: not an outcome
        sim = self.agents.get(caller.agent)
        if sim is None or sim.eng.deleted:
            return  # a deleted agent's outcomes are not stored
        row = self.store.row(caller.agent, caller.key)
        told = {"result": value} if error is None else {"error": error.to_wire()}
        if row is None or row["status"] not in (S.COMPLETED.value, S.FAILED.value):
            self.violations.append(f"{caller.key}: told {told} before its outcome was committed "
                                   f"(committed row: {row and row['status']})")
        elif unpack(row["outcome"]) != told:
            self.violations.append(f"{caller.key}: told {told}, but {unpack(row['outcome'])} was committed")

    # -- the world's own events --

    def commit(self) -> GolemError | None:
        """The store commits what was written; its callbacks run; their effects are carried out."""
        err = self.store.commit()
        for sim in list(self.sims):
            sim.apply()
        return err

    def fail_commit(self) -> GolemError | None:
        """The next commit fails (the disk is full): rolled back, every callback told."""
        self.store.fail_next_commit()
        return self.commit()

    def advance(self, seconds: float) -> None:
        """Time passes; the timers that come due fire, soonest first, each at its due time."""
        end = self.clock() + seconds
        while True:
            due = [(t, timer, sim) for sim in self.sims for timer, t in sim.timers.items() if t <= end]
            if not due:
                break
            t, timer, sim = min(due, key=lambda d: d[0])
            sim.fire(timer)
        self.clock.t = max(self.clock.t, end)

    def restart(self) -> list[Sim]:
        """The daemon is killed (kill -9) and starts again. Every engine,
        worker, timer and caller's connection is gone, and so is the open
        transaction (FakeStore.crash); each agent is rebuilt from what is
        committed (`recover`), then recovery commits. Returns the new Sims."""
        self.store.crash()
        self.ctx = EngineContext(policy=self.ctx.policy, clock=self.clock, batch=self.ctx.batch)
        self.agents, self.sims = {}, []
        for name in sorted(self.store.committed.agents):
            self.recover(name)
        self.commit()  # golemd.driver.recovery.recover: commit_now
        return list(self.sims)

    def recover(self, name: str) -> Sim:
        """One agent as golemd.driver.recovery rebuilds it: its row rolled
        forward (FakeStore.agent_row), its next seq after the journal's, its
        failure, then its unfinished invocations queued again in the order
        the store reads them (by row id), a running one as pending; a failed
        agent's fail at once."""
        row = self.store.agent_row(name)
        assert row is not None, f"{name} has no committed row"
        sim = Sim(self, name, self.durable, row)
        self.agents[name] = sim
        self.sims.append(sim)
        eng = sim.eng
        mine = [r for r in self.store.committed.invocations.values() if r["agent_id"] == name]
        eng.next_seq = max((r["seq"] for r in mine), default=-1) + 1
        if row.get("failed_error"):
            eng.failed_error = unpack(row["failed_error"])
        active = sorted((r for r in mine if r["status"] in (S.PENDING.value, S.RUNNING.value, S.SCHEDULED.value)),
                        key=lambda r: r["id"])
        for r in active:
            status = S(r["status"])
            if status == S.RUNNING:
                status = S.PENDING
            method, args = unpack(r["args"])
            inv = Invocation(key=r["key"], method=method, args=args, args_packed=bytes(r["args"]), seq=r["seq"],
                             created_at=r["created_at"], status=status, schedule_at=r["schedule_at"],
                             timeout=r["timeout"], rowid=r["id"])
            eng.enqueue(inv)
            sim.apply()
        if eng.failed_error is not None and eng.pending_count:
            eng.fail_all_pending(GolemError.from_wire(eng.failed_error))
            sim.apply()
        return sim

    def reload(self) -> None:
        """New code is loaded: the generation moves on, and what was sent ahead
        is taken back (golemd.driver.supervisor's reload)."""
        self.ctx.generation += 1
        for sim in list(self.agents.values()):
            sim.unsend()

    # -- control operations, as the handlers call them --

    def cancel(self, key: str, agent: str | None = None, reply_first: Any = None,
               worker_saw_drop: bool = False) -> None:
        """As the driver cancels (Sim.cancel: a call sent ahead is dropped first)."""
        self.sim_of(agent).cancel(key, reply_first, worker_saw_drop)

    def interrupt(self, recover: bool = False, agent: str | None = None) -> None:
        sim = self.sim_of(agent)
        control.interrupt(sim.eng, recover)
        sim.apply()

    def resume(self, agent: str | None = None) -> None:
        sim = self.sim_of(agent)
        control.resume(sim.eng)
        sim.apply()

    def delete(self, agent: str | None = None) -> Sim:
        """As the supervisor deletes: the engine told, the agent forgotten, its
        rows deleted. Returns its Sim, whose worker may still have to die."""
        sim = self.sim_of(agent)
        control.delete(sim.eng)
        sim.apply()
        del self.agents[sim.name]
        self.store.delete_agent(sim.name)
        return sim

    def shutdown(self) -> None:
        """The daemon stops (golemd.driver.supervisor.stop_all, its first half)."""
        self.ctx.draining = True
        for sim in self.agents.values():
            control.shutdown(sim.eng)
            sim.apply()

    def suspend(self, agent: str | None = None) -> bool:
        sim = self.sim_of(agent)
        done = sim.eng.suspend()
        sim.apply()
        return done

    # -- the default agent's worker and timers --

    def spawned(self) -> None:
        self.sim.spawned()

    def ready(self) -> None:
        self.sim.ready()

    def constructor_fails(self, type_: str = "ValueError", message: str = "bad args") -> None:
        self.sim.constructor_fails(type_, message)

    def spawn_fails(self, why: str = "the template is gone") -> None:
        self.sim.spawn_fails(why)

    def reply(self, value: Any = None, snapshot: Any = ...) -> Invocation:
        return self.sim.reply(value, snapshot)

    def raise_(self, type_: str = "ValueError", message: str = "boom") -> Invocation:
        return self.sim.raise_(type_, message)

    def fail_call(self, type_: str = "ValueError", message: str = "boom") -> Invocation:
        return self.sim.raise_(type_, message)

    def crash(self, why: str = "killed by SIGSEGV", protocol_error: bool = False, reap: bool = True) -> None:
        self.sim.crash(why, protocol_error, reap)

    def die(self, why: str = "killed by SIGKILL", reap: bool = True) -> None:
        self.sim.die(why, reap)

    def reap(self, why: str = "killed by SIGKILL", protocol_error: bool | None = None) -> None:
        self.sim.reap(why, protocol_error)

    def fire(self, timer: Timer) -> None:
        self.sim.fire(timer)

    @property
    def call(self) -> Invocation | None:
        return self.sim.call

    @property
    def status(self) -> AgentStatus:
        return self.sim.status

    # -- shortcuts --

    def warm(self, agent: str | None = None) -> Sim:
        """Bring the agent to Idle with a built worker, through one call."""
        caller = self.invoke(f"warm{len(self.callers)}", agent=agent)
        sim = self.sim_of(agent)
        self.commit()
        if sim.worker is not None and sim.worker.phase != "ready":
            sim.ready()
        sim.reply("warm")
        self.commit()
        assert caller.value == "warm"
        assert sim.status is AgentStatus.IDLE, sim.status
        return sim

    def saved_state(self, agent: str | None = None) -> list[str]:
        """The keys the committed snapshot holds: the calls that took effect, in order."""
        return decode_state(self.store.committed_snapshot(agent or self.default))

    def journaled_status(self, key: str, agent: str | None = None) -> str | None:
        row = self.store.row(agent or self.default, key)
        return row["status"] if row else None

