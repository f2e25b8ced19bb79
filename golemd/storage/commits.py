"""Group commit: when a store's open transaction is committed, and who is told.

A store's writes go into one open transaction, committed together once the
loop has run everything that was ready: `await store.commit()` returns when
this caller's writes are durable, and concurrent requests share the
transaction. GroupCommit is that scheduling, apart from the database: a store
subclasses it, keeps `_in_txn` true while its transaction holds writes, and
implements _end_transaction(). The loop, its load and the clock come in
through attach(LoopHooks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sized
from typing import NoReturn

from golemd.faults import commit_fails
from golemd.model.errors import Code, GolemError
from golemd.perf import cork
from golemd.storage.base import Cancellable, CommitCallback, LoopHooks

log = logging.getLogger("golemd.store")


def _ignore(_err: GolemError | None) -> None:
    pass


def _no_loop(*_args: object) -> NoReturn:
    raise RuntimeError("the store schedules commits on an event loop: attach() it or run in one")


def tell(callbacks: list[CommitCallback], error: GolemError | None) -> None:
    """Each callback, in order, even when one raises: every caller must hear."""
    cork.hold()  # the callers told of this commit are answered in one write per connection
    try:
        for fn in callbacks:
            try:
                fn(error)
            except Exception:
                log.exception("a commit callback failed")
    finally:
        cork.release()


class GroupCommit:
    """The committing half of a Store (golemd.storage.base): its docstrings there."""

    LAZY_NS = 50_000  # an on_commit_idle commit waits at most this long (idle())
    GROUP_DELAY = 0.001  # under load (busy()), a group commit waits this long to take in more
    LATER_DELAY = 1.0  # a write_later() write waits this long, or for a commit that writes its name

    def __init__(self) -> None:
        self._in_txn = False  # the subclass's transaction holds writes
        self._callbacks: list[CommitCallback] = []
        self._flush_scheduled = False
        self._holds = 0
        self._urgent = False  # someone waits on a commit (on_commit), not only on_commit_idle
        self._lazy_since = 0  # clock_ns of the oldest on_commit_idle not yet committed
        self._flush_timer: Cancellable | None = None
        self._deferred: dict[str, Callable[[], None]] = {}
        self._later: dict[str, Callable[[], None]] = {}
        self._later_timer: Cancellable | None = None
        # The hooks, kept as plain attributes: they are read on every
        # invocation's path. Until attach(), they follow the running loop.
        self._following = True
        self._loop: object = None
        self._call_soon: Callable[[Callable[[], None]], object] = _no_loop
        self._call_later: Callable[[float, Callable[[], None]], Cancellable] = _no_loop
        self._ready: Sized | None = None
        self._busy: Callable[[], bool] | None = None
        self._idle_hook = False
        self._clock_ns: Callable[[], int] = time.perf_counter_ns
        self._commit_timer: Callable[[int], None] | None = None

    def attach(self, hooks: LoopHooks) -> None:
        """Schedule commits through these hooks from now on (the daemon: its loop)."""
        self._following = False
        self._bind(hooks)

    def _bind(self, hooks: LoopHooks) -> None:
        self._call_soon = hooks.call_soon
        self._call_later = hooks.call_later
        self._ready = hooks.ready
        self._busy = hooks.busy
        self._idle_hook = hooks.idle_hook
        self._clock_ns = hooks.clock_ns
        self._commit_timer = hooks.commit_timer

    def _follow_running_loop(self) -> None:
        """Unattached: schedule on whichever loop runs now (tests, tools)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._bind(LoopHooks.for_loop(loop))

    # -- the subclass's side -----------------------------------------------------

    def _end_transaction(self, error: GolemError | None) -> GolemError | None:
        """Commit the open transaction, or roll it back when `error` is given
        or the commit fails; clear _in_txn. Returns what the callers are told."""
        raise NotImplementedError

    def _rolled_back(self) -> None:
        """The open transaction was lost: so are the writes it was to carry."""
        self._deferred.clear()

    def _fail_callbacks(self, err: GolemError) -> None:
        """The transaction was rolled back under us (SQLite does on a full
        disk): everyone waiting on this group commit lost their writes."""
        callbacks, self._callbacks = self._callbacks, []
        self._urgent = False  # nobody waits on a commit now
        self._lazy_since = 0
        tell(callbacks, err)

    # -- committing --------------------------------------------------------------

    def write_before_commit(self, name: str, write: Callable[[], None]) -> None:
        """Call write() just before the next commit, once however often asked:
        a row that changes with every invocation (an agent's counters and
        snapshot) is written once per group commit, in the same transaction."""
        self._later.pop(name, None)
        self._deferred[name] = write

    def write_later(self, name: str, write: Callable[[], None]) -> None:
        """write_before_commit, for a commit of its own LATER_DELAY from now
        (or an earlier one that writes this name anyway): a row whose
        readers can do without it meanwhile (golemd.storage.rollforward)."""
        if name in self._deferred:
            self._deferred[name] = write
            return
        self._later[name] = write
        if self._later_timer is None:
            if self._following:
                try:
                    self._follow_running_loop()
                except RuntimeError:  # no loop to wait on: the next commit takes it
                    self._deferred[name] = self._later.pop(name)
                    return
            self._later_timer = self._call_later(self.LATER_DELAY, self._write_later_now)

    def _write_later_now(self) -> None:
        self._later_timer = None
        self._take_later()
        if not self._deferred or self._flush_scheduled:
            return  # a commit is on its way: it takes them
        if self._holds:
            self._urgent = True  # release() commits
            return
        self._flush()

    def _take_later(self) -> None:
        """The write_later writes go into the next commit."""
        later, self._later = self._later, {}
        for name, write in later.items():
            self._deferred.setdefault(name, write)

    def commit(self) -> asyncio.Future[None]:
        """A future resolved once everything written so far is committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(err: GolemError | None) -> None:
            if fut.done():
                return
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)

        self.on_commit(settle)
        return fut

    def commit_soon(self) -> None:
        """Commit what was written, telling no one: a failure is logged by the commit."""
        self.on_commit(_ignore)

    def _flush_soon(self) -> None:
        """Commit at the end of this loop round, so that every request handled in
        it shares the transaction; or now, when nothing else is ready to run in
        this round and so nobody could share it (a lone call saves a round)."""
        if self._flush_scheduled or self._holds:
            return
        if self._following:
            self._follow_running_loop()
        if self._busy is not None and self._busy():
            # Under load (more workers busy than CPUs) a commit waits a little
            # to take in more: each commit rewrites every page it touched, and
            # each busy agent's row once. Half the commits and agent-row writes
            # in W2; nobody waiting on one call sees the delay.
            self._flush_scheduled = True
            self._flush_timer = self._call_later(self.GROUP_DELAY, self._flush)
            return
        if self._ready is not None and not self._ready:
            self._flush()
            return
        self._flush_scheduled = True
        self._call_soon(self._flush)

    def hold(self) -> None:
        """Defer commits until release(): a batch of requests read together
        shares one transaction even when nothing else is ready to run."""
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        if not self._holds and self._urgent:
            self._flush_soon()

    def on_commit(self, fn: CommitCallback) -> None:
        """Call fn(None) once everything written so far is committed, or fn(error).

        Called from inside the commit, not a loop round later as a future's
        callbacks would be: the hot path of every invocation goes through here."""
        if not self._in_txn:
            fn(None)
            return
        self._callbacks.append(fn)
        self._urgent = True
        self._flush_soon()

    def on_commit_idle(self, fn: CommitCallback) -> None:
        """on_commit, for a commit that may wait a little: until another write
        needs one, the event loop is about to sleep, or LAZY_NS have passed,
        whichever comes first (idle()). A warm call's enqueue then commits with
        its outcome when the reply comes back quickly. Without the loop's idle
        hook, the same as on_commit."""
        if not self._idle_hook:
            self.on_commit(fn)
            return
        if not self._in_txn:
            fn(None)
            return
        if not self._lazy_since:
            self._lazy_since = self._clock_ns()
        self._callbacks.append(fn)

    def idle(self, sleeping: bool) -> bool:
        """Called by the event loop at every turn (golemd.perf.spin): commit, in this
        loop round, what waits when the loop is about to sleep or when it has
        waited LAZY_NS. True when a commit was scheduled, which the loop must
        run before it sleeps."""
        if not self._in_txn or self._flush_scheduled:
            return False
        if not sleeping and self._clock_ns() - self._lazy_since < self.LAZY_NS:
            return False
        if self._following:
            self._follow_running_loop()
        self._flush_scheduled = True
        self._call_soon(self._flush)
        return True

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._flush_scheduled = False
        self._urgent = False
        self._lazy_since = 0
        error: GolemError | None = None
        if self._deferred:
            deferred, self._deferred = self._deferred, {}
            try:
                for write in deferred.values():
                    write()
            except GolemError as err:
                error = err
        callbacks, self._callbacks = self._callbacks, []
        if self._in_txn:
            if error is None and callbacks and commit_fails():
                # GOLEMD_FAIL_COMMIT (golemd.faults): a commit someone waits on
                # fails as on a full disk, through the store's own rollback.
                error = GolemError(Code.STORAGE_FULL, "the journal cannot be written: disk full (GOLEMD_FAIL_COMMIT)")
            timer = self._commit_timer
            if timer is None:
                error = self._end_transaction(error)
            else:
                began = self._clock_ns()
                error = self._end_transaction(error)
                timer(self._clock_ns() - began)
        tell(callbacks, error)

    def commit_now(self) -> None:
        """Commit synchronously (start-up and shutdown, outside the group commit),
        with every write_later write."""
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None
        self._take_later()
        self._flush()
