"""The Store protocol: what the driver, the engine and the daemon may ask of a store.

The docstrings below are the contract. tests/storage/test_contract.py checks
it against every implementation: golemd.storage.sqlite.SqliteStore and
golemd.storage.postgres.PostgresStore.

The model. One writer, owned by the event loop. Every write goes into one
open transaction; nothing written is durable before a commit, and a commit
makes all of it durable together, or, when it fails, none of it: every write
of the group is rolled back, whoever made it. Reads see the store's own
writes, committed or not. Commits are grouped: a caller asks for one
(on_commit, commit()) and is told from inside it; the store decides when it
runs, so that the requests handled in one loop round share it (LoopHooks).

Rows are plain dicts. AgentRow and InvocationRow below say what keys a row
read back has; the read methods are typed dict[str, Any] all the same,
since that is what the engine's Journal and the driver take (a TypedDict is
not one). Statuses
are golemd.model.states.InvocationStatus values: pending, scheduled and
running are unfinished ("active"); completed, failed and canceled finished.
Times are seconds since the epoch, as the caller gives them: a store never
reads a clock for the rows it keeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass
from typing import Any, NotRequired, Protocol, TypedDict

from golemd.model.errors import GolemError

CommitCallback = Callable[[GolemError | None], None]
"""Told once of a commit: None when it is durable, else why it failed."""


class AgentRow(TypedDict):
    agent_id: str  # canonical agent ID, the primary key
    env: str
    type: str
    args: bytes  # msgpack of the constructor's arguments
    created_at: float
    last_active_at: float
    completed_count: int
    failed_count: int
    retry_count: int
    last_error: str | None
    interrupted: int  # 1 while interrupted by the user
    failed_error: bytes | None  # msgpack of the error that makes the agent Failed
    snapshot: bytes | None  # the saved state
    env_vars: bytes | None  # msgpack of its environment variables {name: value} (agent new); None: none
    fin_upto: int  # the newest finish number (InvocationRow.fin) this row takes in; 0 by default


class InvocationRow(TypedDict):
    id: int  # the row id: enqueue_invocation's and insert_invocation's answer
    agent_id: str
    key: str  # idempotency key, unique per agent
    seq: int  # queue order within the agent
    method: str
    args: bytes  # msgpack of [method, args]
    status: str
    outcome: bytes | None  # msgpack of {"result": ...} or {"error": ...}
    created_at: float
    started_at: float | None
    finished_at: float | None
    schedule_at: float | None
    timeout: float | None
    snapshot: bytes | None  # the agent's state after it, when it completed and changed it (agent revert)
    fin: int | None  # its agent's finish number, when the agent's row was left to be written later


class EffectRow(TypedDict):
    agent_id: str
    key: str  # the invocation's idempotency key
    seq: int  # the effect's number in its invocation, from 0
    kind: str  # call, trigger, step, sleep, promise, wait, complete
    request: bytes  # msgpack of what was asked: compared on a re-run
    result: bytes | None  # msgpack of {"value": V} or {"error": {...}}; None while it waits
    started_at: float
    until: float | None  # a sleep's wake-up time; a promise wait's deadline
    finished_at: float | None


class PromiseRow(TypedDict):
    id: str
    agent_id: str  # the agent whose invocation created it
    key: str  # that invocation's idempotency key
    seq: int  # the effect that created it
    created_at: float
    completed_at: float | None  # None: pending
    value: bytes | None  # msgpack of the value it was completed with


class OplogError(TypedDict):
    code: NotRequired[str]  # the error code; absent for a step's own exception, which has
    type: NotRequired[str]  # the exception's class instead
    message: str


class OplogEffect(TypedDict):
    seq: int  # the effect's number in its invocation, from 0
    kind: str  # call, trigger, step, sleep, promise, wait, complete
    target: NotRequired[str]  # the agent called (as written), the step's function, the promise
    callee_key: NotRequired[str]  # call, trigger: the key the callee's invocation runs under
    request: NotRequired[Any]  # what was asked, unpacked (EffectRow.request)
    until: NotRequired[float]  # a sleep's wake-up time, a promise wait's deadline
    result: NotRequired[Any]  # its value, when this entry has it (may be None)
    error: NotRequired[OplogError]  # or the error it ended with
    waiting: NotRequired[bool]  # True: no result journaled yet
    omitted: NotRequired[dict[str, int]]  # "request" / "result" too large to show: packed bytes


class OplogEntry(TypedDict):
    index: int  # 1-based position in the agent's whole log
    ts: float
    kind: str  # an event's kind, or enqueued / started / an invocation's final status
    idempotency_key: NotRequired[str]
    method: NotRequired[str]
    detail: NotRequired[str]
    # The content (all additive: a reader that knows only the fields above still works).
    args: NotRequired[list[Any]]  # enqueued: the invocation's arguments
    schedule_at: NotRequired[float]  # enqueued: not before then
    timeout: NotRequired[float]  # enqueued: its timeout in seconds
    result: NotRequired[Any]  # completed: what the method returned (may be None)
    error: NotRequired[OplogError]  # failed: the error it failed with
    effect: NotRequired[OplogEffect]  # effect, effect_done
    omitted: NotRequired[dict[str, int]]  # "args" / "result" / "error" too large to show: packed bytes


class StoreUnavailable(Exception):
    """A store could not be opened: its server unreachable or refusing us, or
    its database in use by another daemon. The message says which."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LoopHooks:
    """How a store schedules its commits: given to Store.attach() by the
    daemon, or by a test that steps the loop and the clock by hand."""

    call_soon: Callable[[Callable[[], None]], object]
    """Run a callback in the next loop round."""
    call_later: Callable[[float, Callable[[], None]], Cancellable]
    """Run a callback after a delay in seconds."""
    ready: Sized | None = None
    """The callbacks ready to run in this loop round (CPython's loop._ready).
    Empty means nothing else runs in this round, so nobody could share a
    commit and it runs at once. None: unknown, commits wait a round."""
    busy: Callable[[], bool] | None = None
    """Asked at each commit request: True under load, when a commit waits
    Store.GROUP_DELAY to take in more."""
    idle_hook: bool = False
    """The loop calls Store.idle() at every turn (golemd.perf.spin.hook_loop),
    so on_commit_idle may wait for it."""
    clock_ns: Callable[[], int] = time.perf_counter_ns
    """A monotonic clock in nanoseconds: how long an idle commit has waited."""
    commit_timer: Callable[[int], None] | None = None
    """Told how many nanoseconds each commit took (golemd_store_commit_seconds);
    None: commits are not timed."""

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop, *, busy: Callable[[], bool] | None = None,
                 idle_hook: bool = False, clock_ns: Callable[[], int] = time.perf_counter_ns,
                 commit_timer: Callable[[int], None] | None = None) -> LoopHooks:
        """The hooks of an asyncio loop; the one place that reads its private queue."""
        ready: Sized | None = getattr(loop, "_ready", None)
        return cls(loop.call_soon, loop.call_later, ready, busy, idle_hook, clock_ns, commit_timer)


@dataclass(slots=True)
class AgentLoad:
    """Store.load_one's answer."""

    row: dict[str, Any] | None  # its AgentRow; None: no such agent
    next_seq: int
    active: list[dict[str, Any]]  # its unfinished invocations, by seq
    effects: dict[tuple[str, str], list[dict[str, Any]]]  # theirs, by (agent_id, key), by seq


class Store(Protocol):
    """Agents, their invocations (queues and stored outcomes), snapshots and events."""

    # -- writing: into the open transaction, durable at the next commit -------

    def insert_agent(self, row: Mapping[str, Any]) -> None:
        """Write an agent's row (AgentRow's columns; agent_id, env, type,
        args, created_at and last_active_at required), replacing any row of
        the same agent_id. Columns not given take their defaults: the counts
        and interrupted 0, last_error, failed_error, snapshot and env_vars None."""
        ...

    def update_agent(self, agent_id: str, **cols: Any) -> None:
        """Set these columns (AgentRow's, but agent_id) of the agent's row.
        An unknown agent: nothing happens."""
        ...

    def insert_invocation(self, row: Mapping[str, Any]) -> int:
        """Write an invocation (InvocationRow's columns but id; agent_id, key,
        seq, method, args, status and created_at required, the others None),
        replacing the agent's row with the same key. Returns its row id, as
        enqueue_invocation does. For tools and tests; the daemon enqueues."""
        ...

    def enqueue_invocation(self, agent_id: str, key: str, seq: int, method: str, args: bytes,
                           status: str, created_at: float, schedule_at: float | None,
                           timeout: float | None) -> int:
        """insert_invocation of a new invocation, without a dict: on every
        invocation's path. Returns its row id (positive, and no other row the
        store holds has it), which finish_invocation takes."""
        ...

    def update_invocation(self, agent_id: str, key: str, **cols: Any) -> None:
        """Set these columns (InvocationRow's, but id, agent_id and key) of the
        agent's invocation with this key. None such: nothing happens."""
        ...

    def finish_invocation(self, rowid: int, status: str, outcome: bytes, finished_at: float,
                          started_at: float | None, snapshot: bytes | None = None,
                          snapshot_kept: bool = True, fin: int | None = None) -> None:
        """Record an invocation's outcome by its row id: on every invocation's
        path; `snapshot`, the state it left when it changed it (agent revert);
        `snapshot_kept` False when it changed the state but `snapshot` does
        not hold it (too large to keep per invocation). `fin`: a completed
        invocation whose agent's row is written later (write_later), with
        its finish number, greater than the row's fin_upto and than every
        fin before it; the agent's row reads rolled forward over it
        (golemd.storage.rollforward).
        An unknown row id (its agent was deleted): nothing happens."""
        ...

    def history(self, agent_id: str) -> list[dict[str, Any]]:
        """The agent's finished invocations (InvocationRow without args and
        outcome), in the order they finished (by finished_at, then row id):
        what agent revert chooses from. Each also has `snapshot_recorded`:
        False when its snapshot was not kept (written before snapshots were
        kept per invocation, or too large), so that its None says nothing of
        whether it changed the state."""
        ...

    def forget_invocations(self, agent_id: str, keys: list[str]) -> None:
        """Drop these invocations of the agent, their effects and promises,
        as if they had never been (agent revert): their keys can run again."""
        ...

    def write_before_commit(self, name: str, write: Callable[[], None]) -> None:
        """Call write() just before the next commit, in its transaction, once
        however often it was asked under this name (the last write given is
        the one called): a row that changes with every invocation is written
        once per group commit. A write that raises GolemError fails the
        commit: everything in it is rolled back and every caller told."""
        ...

    def write_later(self, name: str, write: Callable[[], None]) -> None:
        """write_before_commit, for a commit of its own a second or so from
        now, or an earlier commit that writes this name anyway: a row whose
        readers do without it meanwhile (an agent's row, rolled forward).
        commit_now() and close() take every such write."""
        ...

    def event(self, agent_id: str, ts: float, kind: str, key: str | None = None,
              method: str | None = None, detail: str | None = None) -> None:
        """Append an event to the agent's oplog."""
        ...

    def delete_agent(self, agent_id: str) -> None:
        """Remove the agent's row, all its invocations (whatever their status),
        their effects, its promises and its events; other agents keep theirs.
        An unknown agent: nothing."""
        ...

    # -- durable execution: effects and promises (EffectRow, PromiseRow) ------

    def put_effect(self, agent_id: str, key: str, seq: int, kind: str, request: bytes,
                   started_at: float, until: float | None = None, result: bytes | None = None,
                   finished_at: float | None = None) -> None:
        """Journal effect `seq` of the agent's invocation `key`, replacing one
        of the same number: waiting (result None) or done."""
        ...

    def finish_effect(self, agent_id: str, key: str, seq: int, result: bytes, finished_at: float) -> None:
        """Journal a waiting effect's result. None such: nothing happens."""
        ...

    def load_effects(self, agent_id: str, key: str) -> list[dict[str, Any]]:
        """The invocation's effects (EffectRow), by seq."""
        ...

    def load_active_effects(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """The effects of every unfinished invocation, by (agent_id, key),
        each list by seq (at recovery)."""
        ...

    def agent_effects(self, agent_id: str) -> list[dict[str, Any]]:
        """All the agent's effects (EffectRow), oldest first (the oplog)."""
        ...

    def put_promise(self, promise_id: str, agent_id: str, key: str, seq: int, created_at: float) -> None:
        """Create a pending promise; one that exists already stays as it is."""
        ...

    def complete_promise(self, promise_id: str, value: bytes, completed_at: float) -> bool:
        """Complete a pending promise: True; False if it is unknown or complete already."""
        ...

    def get_promise(self, promise_id: str) -> dict[str, Any] | None:
        """The promise (PromiseRow), or None."""
        ...

    def list_promises(self, agent_id: str | None = None, pending: bool = True) -> list[dict[str, Any]]:
        """Promises (PromiseRow), oldest first: the agent's or everyone's,
        only the pending ones or all."""
        ...

    def prune(self, agent_id: str, keep: int, older_than: float) -> int:
        """Retention: drop the agent's finished invocations that are neither
        among its `keep` newest (by finish time) nor finished after
        `older_than`. Never an unfinished one, whatever its finished_at says,
        nor another agent's. When the agent holds more than `keep`
        invocations, its events older than both `older_than` and its
        max(keep, 1)-th newest finish go too. A dropped invocation's effects
        and promises go with it. Returns how many rows (invocations and
        events) it dropped."""
        ...

    # -- committing ------------------------------------------------------------

    def on_commit(self, fn: CommitCallback) -> None:
        """Call fn(None) once everything written so far is committed, or
        fn(error) with the GolemError (STORAGE_FULL, INTERNAL) of a commit
        that failed and rolled the whole group back. fn is called exactly
        once, from inside the commit, not a loop round later (the hot path of
        every invocation goes through here), after those that asked before
        it. Nothing written: fn(None) at once, before on_commit returns. An
        exception from fn is logged; the other callbacks still run."""
        ...

    def on_commit_idle(self, fn: CommitCallback) -> None:
        """on_commit, for a commit that may wait: until another caller asks
        for one, until the loop is about to sleep, or until a short while
        (the store's LAZY_NS) has passed, whichever comes first (idle()). A
        warm call's enqueue then commits with its outcome. Without an idle
        hook (LoopHooks.idle_hook), the same as on_commit."""
        ...

    def commit(self) -> asyncio.Future[None]:
        """A future of the running loop, resolved when everything written so
        far is committed, or failed with the commit's GolemError. Already
        resolved when nothing was written."""
        ...

    def commit_soon(self) -> None:
        """Ask for a commit of what was written, telling no one (a failure is
        logged by the commit)."""
        ...

    def commit_now(self) -> None:
        """Commit now, synchronously, held or not (start-up and shutdown):
        the callbacks waiting are told before it returns."""
        ...

    def hold(self) -> None:
        """Start no commit until the matching release() (holds nest): the
        requests of one read share one transaction even when nothing else is
        ready to run."""
        ...

    def release(self) -> None:
        """End a hold(). The last one starts the commit that on_commit asked
        for meanwhile; one that only on_commit_idle asked for goes on waiting."""
        ...

    def idle(self, sleeping: bool) -> bool:
        """Called by the event loop at every turn (LoopHooks.idle_hook), with
        `sleeping` True when it is about to sleep: schedule (call_soon) the
        commit of what was written when the loop is about to sleep or an idle
        commit has waited long enough. True when it scheduled one, which the
        loop must run before it sleeps; False when there is nothing to
        commit or a commit is already scheduled."""
        ...

    def attach(self, hooks: LoopHooks) -> None:
        """Schedule commits through these hooks from now on. Until attached,
        a store schedules them on the running asyncio loop, with no busy
        predicate, no idle hook and time.perf_counter_ns."""
        ...

    # -- reading: sees the store's own writes, committed or not ----------------

    def get_invocation(self, agent_id: str, key: str) -> dict[str, Any] | None:
        """The agent's invocation with this idempotency key (keys are scoped
        to one agent), an InvocationRow, or None."""
        ...

    def agent_row(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's row (AgentRow) rolled forward over its invocations
        whose fin is above its fin_upto, oldest first: each adds one to
        completed_count, its finished_at to last_active_at when later, its
        snapshot when it has one, and its fin as fin_upto. None: unknown."""
        ...

    def saved_snapshot(self, agent_id: str) -> bytes | None:
        """agent_row's snapshot; None for an agent without one, or unknown."""
        ...

    def load_agents(self) -> list[dict[str, Any]]:
        """Every agent's row as agent_row reads it, in no particular order (at recovery)."""
        ...

    def next_seqs(self) -> dict[str, int]:
        """For each agent with invocation rows (finished or not), one more
        than its largest seq: the seq its next invocation takes (at recovery)."""
        ...

    def load_active(self) -> dict[str, list[dict[str, Any]]]:
        """Every agent's unfinished invocations (pending, scheduled, running;
        InvocationRows), each agent's in queue order (by seq); agents with
        none are absent (at recovery)."""
        ...

    def load_one(self, agent_id: str) -> AgentLoad:
        """One agent as recovery reads it (a cluster node taking it over):
        load_agents', next_seqs', load_active's and load_active_effects'
        answers for this agent alone."""
        ...

    def oplog(self, agent_id: str, last: int | None) -> list[OplogEntry]:
        """The agent's events merged with its invocations' lifecycles (enqueued
        at created_at, started at started_at, its status at finished_at) and
        their effects (kind `effect` when asked, `effect_done` when its result
        came later; the detail says what and the result), in
        time order; at one instant created, then enqueued, then started, then
        the rest. Indexed 1.. over the whole log; the key is given as
        idempotency_key, and a field that is None is left out. `last`: only
        the newest `last` entries (with their indexes), 0 none, None all.

        Each entry carries its content (OplogEntry, OplogEffect), read from
        the rows kept already, never written for the oplog: `enqueued` its
        `args` (and `schedule_at`, `timeout` when set); `completed` its
        `result`, present even when None; `failed` its `error` {code,
        message}; `effect` and `effect_done` an `effect` map {seq, kind,
        target, callee_key, request, until, and the result or error where
        the detail shows it; `waiting` while there is none}. A value whose packed form
        is over golemd.storage.oplog.VALUE_MAX_BYTES is left out and its size
        given in `omitted` (of the entry, or of its effect). These fields are
        additive: a reader of the older entries (index, ts, kind, key,
        method, detail) sees them unchanged. golemd.storage.oplog builds the
        entries from the rows, for every store."""
        ...

    def close(self) -> None:
        """Commit what was written (telling whoever waits), then let go of the
        storage. Nothing may be called after."""
        ...
