"""The engine against a small reference model (hypothesis stateful testing).

Random sequences of invoke (awaited or triggered, with new keys or ones used
before, so that keys repeat), cancel, interrupt, interrupt --recover, resume, delete,
worker events (built, constructor raising, spawn failing, crash, protocol
error, reply ok, reply raised), commit, failed commit, timers and time are
played against the engine in a World (tests/engine/harness.py) and against
`Model`, a plain restatement of DESIGN.md §1: a list for the queue, sets and
dicts for what the journal holds, and for every caller the answers it must
get. After every step the engine must agree with the model (what runs, the
queue, the pending count, the status, what every caller was told, the state
the journal holds) and the world's own checks must hold (one worker, one call
at a time, no caller answered twice or before its outcome's commit). At the
end everything is drained (resume, run it all, commit) and every caller must
have been answered exactly once.

A worker's death belongs to the invocation running on that worker: the model
records which worker each run is on, so a death is a crash of the current
invocation only if it ran there, and a stop's reason ends with its run.

`EngineMachine` keeps to the orderly cases: a stopped worker dies in the
same step it was stopped in, a reply never races a stop, no reload, no crash
while starting once a start was stopped, and a key is not reused while its
outcome is uncommitted (the supervisor would read it from the open
transaction). `RacyEngineMachine` allows all but the last: it found the
races that unit tests in test_failures.py, test_idle.py, test_interrupt.py
and test_outcomes.py now pin down, and since their fixes it runs by default
too (derandomized, so CI sees the same examples every run; ENGINE_RACES=N
runs N random ones instead, to explore anew).

`BatchedEngineMachine` and `RacyBatchedEngineMachine` run the same with
batch_calls 3 (docs/semantics.md, "Batched calls"): the harness's worker
holds the calls sent ahead and replies to them in order, drops those it
has not started (and answers `dropped`), and a cancel may race the reply of
the call before (`cancel_racing_a_reply`). A call sent ahead is pending in
the model as any queued one: cancelable (CANCELED) until the one before it
replied, TOO_LATE once it runs.

Every machine may also `restart`: kill -9 of the daemon (World.restart),
the agent rebuilt from what is committed, as golemd.driver.recovery does,
and checked against what the model says was committed (counts, saved
state, outcomes, the queue in order, the hold and the failure); callers of
the dead daemon are told nothing more. `flush_later` is the store's timer
that writes agent rows late (golemd.storage.rollforward), and
`fail_flush_later` fails that commit; the journal's completed count, rolled
forward, must match the model's at every step.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from golemd.engine.context import Policy
from golemd.engine.effects import Timer
from golemd.model.errors import Code, GolemError
from golemd.model.states import AgentStatus
from tests.engine.harness import AGENT, Caller, Sim, Worker, World, decode_state

# A key: a new one (hypothesis favours small numbers, so the common case), or
# one used before, so that keys repeat (attach, stored outcome, conflict).
PICK = st.integers(0, 9)
POLICY = {"retry_attempts": 2, "retry_backoff_initial": 0.1, "retry_backoff_max": 0.4,
          "idle_timeout": 20.0}
TIMEOUT = 2.0

# An expected answer: ("value", v) to an awaited caller, ("ack", reply) to a
# triggered one, ("error", code) to either.
Ans = tuple[str, Any]


@dataclass(eq=False)
class Expect:
    caller: Caller
    want: list[Ans] = field(default_factory=list)
    lost: bool = False  # its daemon was killed: it is told nothing more

    def seen(self) -> list[Ans]:
        out: list[Ans] = []
        for a in self.caller.answers:
            if a.error is not None:
                out.append(("error", a.error.code))
            else:
                out.append(("ack" if self.caller.mode == "trigger" else "value", a.value))
        return out


@dataclass(eq=False)
class Model:
    """One life of the agent (delete ends it) as the contract describes it."""

    queue: list[str] = field(default_factory=list)  # pending keys, FIFO
    journaled: set[str] = field(default_factory=set)  # keys whose enqueue is committed
    running: str | None = None  # the current invocation
    run_on: Worker | None = None  # the worker it runs (or is being built) on
    stop: str | None = None  # why its worker was stopped: interrupt, recover, timeout, delete
    discard: str | None = None  # its run does not count: unsaved, refused
    retrying: bool = False
    held: bool = False
    failed: bool = False
    deleted: bool = False
    attempts: dict[str, int] = field(default_factory=dict)
    start_deaths: int = 0  # workers that died by themselves before they were built, in a row
    args: dict[str, int] = field(default_factory=dict)  # every key this life knows
    outcomes: dict[str, Ans] = field(default_factory=dict)  # committed outcomes
    unsaved: set[str] = field(default_factory=set)  # ran (or canceled), but the journal says pending
    canceled: set[str] = field(default_factory=set)
    canceling: list[str] = field(default_factory=list)  # out of the queue by a cancel not yet committed
    order: dict[str, int] = field(default_factory=dict)  # the order keys were enqueued in (the engine's seq)
    txn_enqueued: list[str] = field(default_factory=list)  # the open transaction's enqueues...
    txn_outcomes: list[tuple[str, Ans, list[Expect]]] = field(default_factory=list)  # ...outcomes
    txn_cancels: list[str] = field(default_factory=list)  # ...and cancels of unsaved outcomes
    waiters: dict[str, list[Expect]] = field(default_factory=dict)  # awaiting callers by key
    acks: dict[str, list[tuple[Expect, dict[str, Any]]]] = field(default_factory=dict)  # triggers
    applied: list[str] = field(default_factory=list)  # keys whose ok outcome is committed, in order
    held_saved: bool = False  # the journal's `interrupted`...
    failed_saved: bool = False  # ...and failure (what a restart reads)
    txn_held: bool | None = None  # what the open transaction writes of them
    txn_failed: bool = False
    # A worker being stopped holds calls sent ahead: nothing starts before it
    # is reaped (they go back to the head of the queue then, and run first).
    reap_first: bool = False

    def ok_outcomes(self) -> int:
        """Completed invocations, committed or in the open transaction (the engine's completed_count)."""
        return len(self.applied) + sum(ans[0] == "value" for _k, ans, _w in self.txn_outcomes)

    def error_outcomes(self) -> int:
        return (sum(ans[0] == "error" for ans in self.outcomes.values())
                + sum(ans[0] == "error" for _k, ans, _w in self.txn_outcomes))

    def active(self) -> set[str]:
        """Unfinished keys (a refused one is forgotten at once, though its worker still dies)."""
        running = {self.running} if self.running and self.discard != "refused" else set()
        return set(self.queue) | running | set(self.canceling)

    def status(self, worker_alive: bool) -> AgentStatus:
        if self.failed:
            return AgentStatus.FAILED
        if self.held:
            return AgentStatus.INTERRUPTED
        if self.retrying:
            return AgentStatus.RETRYING
        if self.running is not None:
            return AgentStatus.RUNNING
        return AgentStatus.IDLE if worker_alive else AgentStatus.SUSPENDED

    # -- what happens to invocations --

    def kick(self, sent: str | None = None) -> None:
        """Start the head of the queue if it may. Nothing queued starts while a
        cancel of a queued key is uncommitted (if it fails, that key goes again
        in its place), but for `sent`: the call the worker had been sent
        ahead, which it starts on its own once it has replied."""
        if (self.running is None and not self.held and not self.failed and not self.deleted
                and not self.reap_first and self.queue and self.queue[0] in self.journaled
                and (not self.canceling or self.queue[0] == sent)):
            self.begin(self.queue.pop(0))

    def begin(self, key: str) -> None:
        self.running, self.run_on, self.stop, self.discard = key, None, None, None

    def end_run(self) -> str:
        key = self.running
        assert key is not None
        self.running, self.run_on, self.stop, self.discard, self.retrying = None, None, None, None, False
        return key

    def tell(self, key: str, ans: Ans) -> None:
        for e in self.waiters.pop(key, []):
            e.want.append(ans)

    def outcome(self, ans: Ans, sent: str | None = None) -> None:
        """The running invocation ends with `ans`: written now, told at the
        commit. `sent`: the call its worker was sent ahead, which it starts next."""
        key = self.end_run()
        event(f"outcome {ans[0] if ans[0] == 'value' else ans[1]}")
        self.attempts.pop(key, None)
        self.txn_outcomes.append((key, ans, self.waiters.pop(key, [])))
        self.kick(sent)

    def put_back(self, reason: str) -> None:
        event(f"put back ({reason})")
        key = self.end_run()
        self.tell(key, ("error", Code.INTERRUPTED))
        if reason != "delete":
            self.queue.insert(0, key)

    def fail_agent(self) -> None:
        if not self.deleted:
            self.txn_failed = True
        self.failed = True
        if self.running is not None:
            self.outcome(("error", Code.AGENT_FAILED))
        while self.queue:
            self.begin(self.queue.pop(0))
            self.outcome(("error", Code.AGENT_FAILED))

    def crashed(self, policy: Policy) -> None:
        """The running invocation's worker died by itself."""
        key = self.running
        assert key is not None
        self.run_on = None
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.start_deaths >= policy.retry_attempts:
            self.fail_agent()
        elif self.attempts[key] >= policy.retry_attempts:
            self.outcome(("error", Code.AGENT_DIED))
        else:
            event("retry")
            self.retrying = True

    def died(self, mine: bool, start_death: bool, protocol_error: bool, policy: Policy) -> None:
        """A worker is dead and reaped (or none could be started). `mine`: the
        running invocation ran, or was to run, on it; `start_death`: it died by
        itself before it was built."""
        waited, self.reap_first = self.reap_first, False
        self._died(mine, start_death, protocol_error, policy)
        if waited:
            self.kick()

    def _died(self, mine: bool, start_death: bool, protocol_error: bool, policy: Policy) -> None:
        if start_death:
            self.start_deaths += 1
        if self.running is None:
            return
        if not mine:
            # It never ran there (it began while that worker was dying): it
            # gets a worker of its own, and a stop aimed at it meanwhile lost
            # nothing; only a hold still stands.
            self.stop = None
            if self.discard == "refused":
                self.end_run()
                self.kick()
            elif self.deleted or self.held:
                self.put_back("delete" if self.deleted else "interrupt")
            return
        reason, discard = self.stop, self.discard
        self.run_on, self.stop, self.discard = None, None, None
        if discard is not None:
            event(f"death of a {discard} run")
        if discard == "refused":
            self.end_run()
            self.kick()
            return
        if discard == "unsaved" and reason is None:
            return  # runs again from the saved state
        if reason is None and protocol_error:
            self.outcome(("error", Code.PROTOCOL_ERROR))
            return
        if reason is None:
            reason = "delete" if self.deleted else "interrupt" if self.held else None
        if reason == "recover":
            event("recovered")
            return
        if reason == "timeout":
            self.outcome(("error", Code.TIMEOUT))
        elif reason in ("interrupt", "delete"):
            self.put_back(reason)
            self.kick()  # resumed meanwhile: it runs again
        else:
            self.crashed(policy)

    def committed(self) -> None:
        for key in self.txn_enqueued:
            self.journaled.add(key)
            for e, ack in self.acks.pop(key, []):
                e.want.append(("ack", ack))
        for key, ans, waiters in self.txn_outcomes:
            self.outcomes[key] = ans
            for e in waiters:
                e.want.append(ans)
            if ans[0] == "value":
                self.applied.append(key)
        for key in self.canceling:
            self.canceled.add(key)
            self.tell(key, ("error", Code.CANCELED))
        self.txn_enqueued, self.txn_outcomes, self.txn_cancels, self.canceling = [], [], [], []
        if self.txn_held is not None:
            self.held_saved = self.txn_held
        self.failed_saved = self.failed_saved or self.txn_failed
        self.txn_held, self.txn_failed = None, False
        self.kick()

    def commit_failed(self) -> bool:
        """The open transaction is lost. True if an outcome was in it (the
        engine then drops the worker's unsaved state)."""
        full = ("error", Code.STORAGE_FULL)
        refused = set(self.txn_enqueued)
        had_outcomes = bool(self.txn_outcomes)
        for key, _ans, waiters in self.txn_outcomes:
            for e in waiters:
                e.want.append(full)
            if key not in refused:
                self.unsaved.add(key)
        for key in self.txn_cancels:
            if key not in refused and key in self.canceled:
                self.canceled.discard(key)
                self.unsaved.add(key)  # the journal has it pending again
        for key in self.txn_enqueued:
            self.tell(key, full)
            for e, _ack in self.acks.pop(key, []):
                e.want.append(full)
            if key in self.queue:
                self.queue.remove(key)
            if self.running == key:
                if self.retrying:  # no worker to wait for: gone at once
                    self.end_run()
                else:
                    self.discard = "refused"  # gone once its worker is dead
            for known in (self.args, self.attempts):
                known.pop(key, None)
            self.canceled.discard(key)
            self.unsaved.discard(key)
            self.journaled.discard(key)
        # A cancel not committed never happened: the key goes back to its place
        # in the queue (by the order of enqueues), or fails with a failed agent.
        back = [key for key in self.canceling if key not in refused]
        was_canceling = bool(self.canceling)
        self.txn_enqueued, self.txn_outcomes, self.txn_cancels, self.canceling = [], [], [], []
        self.txn_held, self.txn_failed = None, False
        for key in back:
            if self.failed:
                self.attempts.pop(key, None)
                self.txn_outcomes.append((key, ("error", Code.AGENT_FAILED), self.waiters.pop(key, [])))
                continue
            later = [i for i, k in enumerate(self.queue) if self.order[k] > self.order[key]]
            self.queue.insert(later[0] if later else len(self.queue), key)
        if was_canceling:
            self.kick()
        return had_outcomes


    def restarted(self) -> Model:
        """This life as a restart finds it in the journal: what was committed
        only. Unfinished keys (queued, running, unsaved, canceled or finished
        in the lost transaction) are queued again in their order; keys
        whose enqueue was not committed are gone; a failed agent's queue fails."""
        canceled = self.canceled - set(self.txn_cancels)
        pending = sorted((k for k in self.journaled if k not in self.outcomes and k not in canceled),
                         key=lambda k: self.order[k])
        known = set(pending) | set(self.outcomes) | canceled
        n = Model(queue=pending, journaled=set(pending), args={k: v for k, v in self.args.items() if k in known},
                  attempts=dict.fromkeys(pending, 0), outcomes=dict(self.outcomes), canceled=canceled,
                  order=dict(self.order), applied=list(self.applied), held=self.held_saved,
                  failed=self.failed_saved, held_saved=self.held_saved, failed_saved=self.failed_saved)
        if n.failed:
            while n.queue:  # recovery fails them, and commits
                key = n.queue.pop(0)
                n.outcomes[key] = ("error", Code.AGENT_FAILED)
        n.kick()
        return n


class EngineMachine(RuleBasedStateMachine):
    RACES = False  # see the module's docstring
    BATCH = 0  # ctx.batch: how many queued calls go to the worker behind the running one

    def __init__(self) -> None:
        super().__init__()
        self.world = World(Policy(**POLICY), batch=self.BATCH)
        self.models: dict[Sim, Model] = {self.world.sim: Model()}
        self.expects: list[Expect] = []
        self.ctor_failures_left = 1
        self.values = 0
        self.keys: list[str] = []

    def key(self, pick: int, new_ok: bool = True) -> str:
        if new_ok and (pick < 5 or not self.keys):
            self.keys.append(f"k{len(self.keys)}")
            return self.keys[-1]
        return self.keys[pick % len(self.keys)] if self.keys else "never-used"

    # -- helpers --

    @property
    def sim(self) -> Sim | None:
        return self.world.agents.get(AGENT)

    @property
    def m(self) -> Model:
        sim = self.sim
        assert sim is not None
        return self.models[sim]

    def worker(self, *phases: str, stopped: bool | None = False) -> Worker | None:
        """The current agent's worker, if in one of `phases` (any if none given)
        and stopped or not as asked (None: either way), not lost."""
        sim = self.sim
        w = sim.worker if sim is not None else None
        if w is None or w.lost or (phases and w.phase not in phases):
            return None
        if stopped is not None and (w.stopped is not None) != stopped:
            return None
        return w

    def death(self, sim: Sim, *, stopped: bool, protocol_error: bool = False, reap: bool = True) -> None:
        """The worker dies (after a Stop, or by itself), and is reaped now or later (reap())."""
        w = sim.worker
        assert w is not None
        if not w.lost:
            if stopped:
                sim.die(reap=False)
            else:
                sim.crash(protocol_error=protocol_error, reap=False)
        if reap:
            sim.reap()
            m = self.models[sim]
            m.died(m.run_on is w, w.crashed and w.phase != "ready", w.protocol_error, self.world.ctx.policy)

    def settle(self) -> None:
        """Without races: a stopped worker dies at once, in the step that stopped it."""
        if self.RACES:
            return
        while True:
            dying = [s for s in self.world.sims if s.worker is not None and s.worker.stopped is not None]
            if not dying:
                return
            self.death(dying[0], stopped=True)

    def after(self) -> None:
        self.settle()
        sim = self.sim
        if sim is not None and sim.eng.queue.ahead:
            event(f"{len(sim.eng.queue.ahead)} sent ahead")
        for sim, m in self.models.items():
            w = sim.worker
            if m.running is not None and m.run_on is None and w is not None and w.stopped is None \
                    and not w.lost:
                m.run_on = w  # it runs on this worker (or will, once it is built)

    def expect(self, caller: Caller) -> Expect:
        e = Expect(caller)
        self.expects.append(e)
        return e

    def warm_and_free(self) -> bool:
        w = self.worker("ready")
        return w is not None and w.call is None and w.generation == self.world.ctx.generation

    # -- callers --

    @rule(pick=PICK, variant=st.sampled_from([0, 0, 0, 1]), mode=st.sampled_from(["await", "await", "trigger"]),
          timeout=st.sampled_from([None, None, TIMEOUT]))
    def invoke(self, pick: int, variant: int, mode: str, timeout: float | None) -> None:
        key = self.key(pick)
        if self.sim is None:  # deleted: created afresh (its creation committed, as a warm-up would)
            self.models[self.world.create(AGENT)] = Model()
            self.world.commit()
        m = self.m
        if any(k == key for k, _a, _w in m.txn_outcomes):
            return  # the supervisor would read the uncommitted outcome (see the report)
        early = (mode == "await" and m.running is None and not m.queue and not m.held and not m.failed
                 and self.warm_and_free())
        caller = self.world.invoke(key, variant, mode=mode, timeout=timeout)
        e = self.expect(caller)
        conflict = ("error", Code.IDEMPOTENCY_CONFLICT)
        if key in m.active():
            if m.args[key] != variant:
                e.want.append(conflict)
            elif mode == "await":
                m.waiters.setdefault(key, []).append(e)
            else:
                running = key == m.running and m.discard != "refused"  # not a refused one's namesake
                ack = {"idempotency_key": key, "status": "running" if running else "pending"}
                if key in m.journaled:
                    e.want.append(("ack", ack))
                else:
                    m.acks.setdefault(key, []).append((e, ack))
        elif key in m.args:
            if m.args[key] != variant:
                e.want.append(conflict)
            elif key in m.canceled:
                e.want.append(("error", Code.CANCELED))
            elif key in m.unsaved:
                e.want.append(("error", Code.STORAGE_FULL))
            else:
                kind, value = m.outcomes[key]
                if kind == "error" or mode == "await":
                    e.want.append((kind, value))
                else:
                    e.want.append(("ack", {"idempotency_key": key, "status": "completed", "result": value}))
        elif m.failed:
            e.want.append(("error", Code.AGENT_FAILED))
        else:
            m.args[key] = variant
            m.order[key] = max(m.order.values(), default=-1) + 1
            m.attempts[key] = 0
            m.txn_enqueued.append(key)
            if mode == "await":
                m.waiters[key] = [e]
            else:
                m.acks[key] = [(e, {"idempotency_key": key, "status": "pending"})]
            if early:
                event("early start")
                m.begin(key)
            else:
                m.queue.append(key)
        self.after()

    @precondition(lambda self: self.sim is not None and self.m.running is None and not self.m.queue
                  and not self.m.held and self.warm_and_free())
    @rule(timeout=st.sampled_from([None, TIMEOUT]), refused=st.booleans())
    def call_warm(self, timeout: float | None, refused: bool) -> None:
        """A new awaited call to an idle warm agent: it goes out before its
        enqueue commits; `refused`: and that commit fails (withdraw)."""
        self.invoke(0, 0, "await", timeout)
        if refused:
            self.fail_commit()

    @rule(n=st.integers(2, 5), triggers=st.booleans())
    def burst(self, n: int, triggers: bool) -> None:
        """Several new invocations at once, so that queues build up."""
        for i in range(n):
            self.invoke(0, 0, "trigger" if triggers and i % 2 else "await", None)

    @precondition(lambda self: self.BATCH)
    @rule(n=st.integers(2, 5))
    def fill_ahead(self, n: int) -> None:
        """Invocations queued behind a running one on a warm worker: its reply
        sends them ahead (a built worker is sent only the first)."""
        self.burst(n, False)
        self.commit()
        w = self.worker(stopped=False)
        if w is not None and w.phase != "ready":
            self.ready()
        w = self.worker("ready", stopped=False)
        if w is not None and w.call is not None:
            self.reply()

    @precondition(lambda self: self.sim is not None)
    @rule(pick=PICK)
    def cancel(self, pick: int) -> None:
        self._cancel(self.key(pick, new_ok=False))

    @precondition(lambda self: self.sim is not None and bool(self.m.queue))
    @rule(pick=PICK)
    def cancel_pending(self, pick: int) -> None:
        """A cancel of a pending key (the first ones: those sent ahead, if any)."""
        self._cancel(self.m.queue[pick % len(self.m.queue)])

    def _cancel(self, key: str) -> None:
        sim = self.sim
        if sim is not None and any(i.key == key for i in sim.eng.queue.ahead):
            event("cancel of a call sent ahead")
        try:
            self.world.cancel(key)
            got = None
        except GolemError as err:
            got = err.code
        self._canceled(key, got)

    @precondition(lambda self: self.BATCH and (w := self.worker("ready", stopped=None)) is not None
                  and bool(w.ahead) and (self.RACES or w.stopped is None))
    @rule(pick=PICK, ok=st.booleans(), saw=st.booleans())
    def cancel_racing_a_reply(self, pick: int, ok: bool, saw: bool) -> None:
        """A cancel of a call sent ahead, while the worker had replied to the
        one it ran (that reply is read while the driver polls, after the
        drop is written); `saw`: the worker read the drop before it started
        the next one (which, taken for started, is TOO_LATE, and runs again)."""
        m = self.m
        w = self.worker("ready", stopped=None)
        assert w is not None and w.call is not None
        key = w.ahead[pick % len(w.ahead)].key
        counts = w.call.key == m.running and m.discard is None
        # The first one sent ahead is taken for started once the reply is read
        # (a cancel of it is TOO_LATE). If the worker saw the drop of that very
        # one first, its `dropped` answer, read below, puts it back at the head
        # of the queue, unannounced (it never ran).
        first = w.ahead[0].key
        sent = first
        event(f"cancel racing a reply{' the worker saw' if saw else ''}")
        self.values += 1
        try:
            self.world.cancel(key, reply_first=self.values if ok else ValueError("boom"), worker_saw_drop=saw)
            got = None
        except GolemError as err:
            got = err.code
        # The worker's `dropped` answers (saw) are read now: read after an
        # interrupt or a failed commit, the engine puts the call it took for
        # started back unannounced (it never ran), which the model does not say.
        sim = self.sim
        assert sim is not None
        sim.read_worker()
        if counts:
            m.outcome(("value", self.values) if ok else ("error", Code.INVOCATION_FAILED), sent)
        self._canceled(key, got)
        if saw and first == key and m.running == key:
            m.end_run()
            m.queue.insert(0, key)
            m.kick()  # at once, unless a cancel is uncommitted
            self.after()  # if it did, it runs on this worker again

    def _canceled(self, key: str, got: Code | None) -> None:
        """What the model says of cancel(key), which answered `got`."""
        m = self.m
        if key in m.queue:
            want = None
            m.queue.remove(key)  # it cannot start; it is canceled, and its callers told, at the commit
            m.canceling.append(key)
        elif key == m.running and m.discard != "refused":
            want = Code.TOO_LATE
        elif key in m.canceling or key in m.canceled:
            want = None
        elif key in m.unsaved:
            want = None
            m.unsaved.discard(key)
            m.canceled.add(key)
            m.txn_cancels.append(key)
        elif key in m.outcomes or any(k == key for k, _a, _w in m.txn_outcomes):
            want = Code.TOO_LATE
        else:
            want = Code.NOT_FOUND
        assert got == want, f"cancel({key}): got {got}, the model says {want}"
        self.after()

    # -- control --

    @precondition(lambda self: self.sim is not None)
    @rule()
    def interrupt(self) -> None:
        m = self.m
        retrying = m.retrying
        self.world.interrupt()
        if not m.held:
            m.txn_held = True
        m.held = True
        if m.running is not None:
            if retrying:
                m.put_back("interrupt")
            elif m.stop in (None, "recover"):
                m.stop = "interrupt"  # held, it must not run again at once
        self.after()

    @precondition(lambda self: self.sim is not None)
    @rule()
    def recover(self) -> None:
        m = self.m
        w = self.worker("spawning", "building", "ready", stopped=None)
        if w is not None and w.stopped is None and m.running is not None:
            m.stop = "recover"
        self.world.interrupt(recover=True)
        self.after()

    @precondition(lambda self: self.sim is not None and self.m.held)
    @rule()
    def resume(self) -> None:
        m = self.m
        sim = self.sim
        # Calls sent ahead to the worker being stopped (the other checks hold
        # the engine's list of them to what was sent) wait for its death.
        # Read before the resume: after it, a warm worker may have been sent
        # the next ones already.
        held_ahead = sim is not None and bool(sim.eng.queue.ahead)
        self.world.resume()
        m.txn_held = False
        m.held = False
        m.reap_first = m.running is None and held_ahead
        m.kick()
        self.after()

    @precondition(lambda self: self.sim is not None)
    @rule()
    def delete(self) -> None:
        m = self.m
        retrying = m.retrying
        self.world.delete()
        m.deleted = True
        for key in m.queue:
            m.tell(key, ("error", Code.CANCELED))
        m.queue.clear()
        if m.running is not None:
            if retrying:
                m.put_back("delete")
            else:
                m.stop = "delete"
        self.world.commit()  # the supervisor awaits it
        for each in self.models.values():
            each.committed()
        self.after()

    # -- the worker --

    @precondition(lambda self: self.worker("spawning", "building", stopped=False) is not None)
    @rule()
    def ready(self) -> None:
        self.world.ready()
        self.m.start_deaths = 0
        self.after()

    @precondition(lambda self: self.ctor_failures_left > 0
                  and self.worker("spawning", "building", stopped=False) is not None)
    @rule()
    def constructor_fails(self) -> None:
        self.ctor_failures_left -= 1
        self.world.constructor_fails()
        self.m.fail_agent()
        self.after()

    def _start_may_fail(self) -> bool:
        return self.RACES or self.sim is None or self.sim.stopped_starts == 0

    @precondition(lambda self: self.worker("spawning", stopped=False) is not None and self._start_may_fail())
    @rule()
    def spawn_fails(self) -> None:
        m = self.m
        self.world.spawn_fails()
        m.died(True, False, False, self.world.ctx.policy)
        self.after()

    @precondition(lambda self: self.worker(stopped=False) is not None
                  and (self.worker("ready") is not None or self._start_may_fail()))
    @rule(reap=st.booleans())
    def crash(self, reap: bool) -> None:
        sim = self.sim
        assert sim is not None
        self.death(sim, stopped=False, reap=reap or not self.RACES)
        self.after()

    @precondition(lambda self: (w := self.worker("ready", stopped=False)) is not None and w.call is not None)
    @rule()
    def protocol_error(self) -> None:
        sim = self.sim
        assert sim is not None
        self.death(sim, stopped=False, protocol_error=True)
        self.after()

    def _reply(self, ok: bool) -> None:
        m = self.m
        w = self.worker("ready", stopped=None)
        assert w is not None and w.call is not None
        key = w.call.key
        counts = key == m.running and m.discard is None
        sent = w.ahead[0].key if w.ahead else None
        if ok:
            self.values += 1
            self.world.reply(self.values)
        else:
            self.world.raise_()
        if counts:
            m.outcome(("value", self.values) if ok else ("error", Code.INVOCATION_FAILED), sent)
        self.after()

    @precondition(lambda self: (w := self.worker("ready", stopped=None)) is not None and bool(w.written))
    @rule()
    def read_worker(self) -> None:
        """The engine reads the `dropped` answers the worker wrote."""
        sim = self.sim
        assert sim is not None
        sim.read_worker()
        self.after()

    @precondition(lambda self: (w := self.worker("ready")) is not None and w.call is not None)
    @rule()
    def reply(self) -> None:
        self._reply(ok=True)

    @precondition(lambda self: (w := self.worker("ready")) is not None and w.call is not None)
    @rule()
    def reply_raised(self) -> None:
        self._reply(ok=False)

    # -- the journal --

    @rule()
    def commit(self) -> None:
        self.world.commit()
        for m in self.models.values():
            m.committed()
        self.after()

    @rule()
    def flush_later(self) -> None:
        """The store's timer: the agent rows written later, in a commit (with
        whatever else is written)."""
        self.world.store.flush_later()
        for sim in self.world.sims:
            sim.apply()
        for m in self.models.values():
            m.committed()
        self.after()

    @rule()
    def fail_flush_later(self) -> None:
        """That commit fails."""
        def flush() -> None:
            self.world.store.fail_next_commit()
            self.world.store.flush_later()
            for sim in self.world.sims:
                sim.apply()
        self.fail_commit(flush)

    @rule()
    def fail_commit(self, commit: Any = None) -> None:
        before = {s: (s.worker, s.worker and s.worker.stopped, len(s.stops)) for s in self.world.sims}
        if commit is None:
            self.world.fail_commit()
        else:
            commit()
        for sim, m in self.models.items():
            w, was_stopped, stops = before[sim]
            if not m.commit_failed() or m.deleted:
                continue
            new = sim.worker
            if (w is None or w.lost) and new is not None and new is not w and m.running is not None:
                # A cancel undone by the failure started its key on a new worker
                # (the last one was dead). Spawned before the failed outcome
                # read the saved state back, it is stopped (its snapshot may be
                # the one the journal lost) and the run does not count; spawned
                # after, it runs from the saved state.
                if new.stopped is not None:
                    m.run_on, m.discard = new, m.discard or "unsaved"
                continue
            if w is None or w.lost:
                continue
            # Its worker holds a state the journal lost: it must be stopped, and
            # what it runs there must run again from the saved state (a reply
            # that races the stop must not count).
            if was_stopped is None:
                assert len(sim.stops) > stops, "a failed commit of an outcome left the worker running"
            if m.running is not None and m.run_on is None and w.call is not None and w.call.key == m.running:
                m.run_on = w  # a cancel undone by the failure sent it there, before the worker was stopped
            if m.running is not None and m.discard is None and m.run_on is w:
                m.discard = "unsaved"
        self.after()

    # -- the daemon --

    @rule()
    def restart(self) -> None:
        """kill -9 of the daemon, and its start: everything not committed is
        lost (callers included), and the agent is rebuilt from the journal
        (World.restart, as golemd.driver.recovery does)."""
        world = self.world
        sim = self.sim
        life = self.models[sim].restarted() if sim is not None else None
        for e in self.expects:
            e.lost = True  # their connections died with the daemon
        event("restart")
        world.restart()
        self.models = {}
        sim = self.sim
        assert (sim is None) == (life is None), "the agent's committed row is not what the model says"
        if sim is None or life is None:
            return
        self.models[sim] = life
        event(f"restart with {'pending' if life.queue or life.running else 'nothing pending'}"
              f"{', unsaved' if self.models and any(k in life.journaled for k in life.queue) else ''}")
        eng = sim.eng
        # Nothing committed lost: counts, state, outcomes; nothing uncommitted kept.
        assert eng.completed_count == len(life.applied), (eng.completed_count, life.applied)
        assert eng.failed_count == sum(ans[0] == "error" for ans in life.outcomes.values()), \
            (eng.failed_count, life.outcomes)
        assert world.saved_state() == life.applied
        assert decode_state(eng.snapshot) == life.applied, "the engine starts from another state"
        assert eng.interrupted == life.held and (eng.failed_error is not None) == life.failed
        for key, (kind, value) in life.outcomes.items():
            stored = world.store.outcome(AGENT, key)
            if kind == "value":
                assert stored == {"result": value}, (key, stored)
            else:
                assert stored is not None and stored.get("error", {}).get("code") == value, (key, stored)
        for key in set(life.args) - set(life.outcomes) - life.canceled:
            row = world.store.row(AGENT, key)
            # Pending (or running: an early start's enqueue), as recovery reads it.
            assert row is not None and row["status"] in ("pending", "running"), (key, row)
        self.after()

    # -- time --

    def _fire(self, sim: Sim, timer: Timer) -> None:
        m = self.models[sim]
        w = sim.worker
        if timer is Timer.TIMEOUT and w is not None and w.phase == "ready" and w.stopped is None \
                and not w.lost:
            assert sim.call is not None and sim.call.key == m.running, "a timeout for no call"
            m.stop = m.stop or "timeout"
        sim.fire(timer)
        if timer is Timer.RETRY and m.retrying:
            m.retrying = False
        self.after()

    @precondition(lambda self: any(s.timers for s in self.world.sims))
    @rule(idle=st.booleans())
    def fire_next_timer(self, idle: bool = False) -> None:
        """The soonest timer fires (the idle timer only if `idle`: else it suspends too often)."""
        armed = [(t, i, s, timer) for i, s in enumerate(self.world.sims) for timer, t in s.timers.items()]
        if not idle:
            armed = [a for a in armed if a[3] is not Timer.IDLE]
            if not armed:
                return
        _due, _n, sim, timer = min(armed)
        self._fire(sim, timer)

    @precondition(lambda self: self.sim is not None and Timer.TIMEOUT in self.sim.timers)
    @rule()
    def time_out(self) -> None:
        """The running call's timeout comes (fire_next_timer would pick it too, but seldom)."""
        sim = self.sim
        assert sim is not None
        self.world.clock.t = max(self.world.clock.t, sim.timers[Timer.TIMEOUT])
        self.advance(0.0)

    @rule(seconds=st.sampled_from([0.05, 0.3, 1.0, 2.5, 30.0]))
    def advance(self, seconds: float) -> None:
        end = self.world.clock() + seconds
        while True:
            due = [(t, i, s, timer) for i, s in enumerate(self.world.sims) for timer, t in s.timers.items()
                   if t <= end]
            if not due:
                break
            _t, _i, sim, timer = min(due)
            self._fire(sim, timer)
        self.world.clock.t = end

    @rule(limit=st.integers(1, 8))
    def serve(self, limit: int) -> None:
        """Several steps of progress at once: build, reply, commit (so that the
        warm paths, such as an early start, come up often)."""
        for _ in range(limit):
            sim = self.sim
            w = sim.worker if sim is not None else None
            if w is not None and w.stopped is None and not w.lost and w.phase != "ready":
                self.ready()
            elif w is not None and w.stopped is None and not w.lost and w.call is not None:
                self.reply()
            elif w is not None and w.stopped is None and not w.lost and w.written:
                self.read_worker()
            elif self.world.store.in_txn:
                self.commit()
            else:
                return

    # Hypothesis picks uniformly among the rules enabled; an alias counts once
    # more. Weighted so that invocations get somewhere between disruptions.
    ready_ = ready
    ready__ = ready
    reply_ = reply
    reply__ = reply
    commit_ = commit
    fail_commit_ = fail_commit
    crash_ = crash
    fire_next_timer_ = fire_next_timer
    cancel_racing_a_reply_ = cancel_racing_a_reply
    fill_ahead_ = fill_ahead
    cancel_pending_ = cancel_pending

    # -- the rules every step keeps --

    @invariant()
    def agrees_with_the_model(self) -> None:
        world = self.world
        assert world.violations == []
        sim = self.sim
        for other in world.sims:
            if other is not sim and not self.RACES:
                assert other.worker is None, "a deleted agent's worker outlived its step"
        if sim is not None:
            m, eng = self.models[sim], sim.eng
            current = eng.current.key if eng.current is not None else None
            assert current == m.running, f"running {current}, the model says {m.running}"
            assert [i.key for i in (*eng.queue.ahead, *eng.queue.fifo)] == m.queue
            assert eng.pending_count == len(m.queue)
            assert set(eng.queue.active) == m.active()
            w = sim.worker
            assert eng.status is m.status(w is not None and not w.lost), (eng.status, m)
            assert m.retrying == (Timer.RETRY in sim.timers)
            if m.running is not None and not m.retrying and not self.RACES:
                assert w is not None, f"{m.running} runs with no worker and no retry coming"
            # A stopped worker may have gone on to a call sent ahead that the
            # engine does not take for started (its reply would not count).
            if w is not None and w.call is not None and w.stopped is None:
                assert w.call.key == m.running, f"{w.call.key} is out, but {m.running} runs"
            if w is not None and not w.lost and not w.written and w.stopped is None:
                # The worker holds, behind the one it runs, what the engine sent ahead.
                assert [i.key for i in w.ahead] == [i.key for i in eng.queue.ahead], (w.ahead, eng.queue.ahead)
            assert len(eng.queue.ahead) <= self.BATCH
            assert eng.completed_count == m.ok_outcomes(), f"completed_count {eng.completed_count}, " \
                f"but {m.ok_outcomes()} completed ({m.applied} committed)"
            row = world.store.agent_row(AGENT)
            if row is not None:
                assert row["completed_count"] == len(m.applied), f"the journal counts {row['completed_count']} " \
                    f"completed, but {m.applied} are committed"
            if world.store.committed.agents.get(AGENT) is not None:
                assert world.saved_state() == m.applied, "the saved state is not what ran"
            for each, life in self.models.items():
                run_on = life.run_on
                if life.running is not None and (life.stop or life.discard) and run_on is not None \
                        and not run_on.lost and each.worker is run_on:
                    assert run_on.stopped is not None, f"{life.running}'s worker should have been stopped " \
                        f"({life.stop or life.discard})"
        for e in self.expects:
            assert e.seen() == e.want, f"{e.caller.key} ({e.caller.mode}): told {e.seen()}, want {e.want}"

    def teardown(self) -> None:
        """Drain: resume, run everything, commit; then nobody may be left waiting."""
        if sys.exc_info()[1] is not None:
            return  # a step failed: its error is the one to see, not the drain's
        for _ in range(500):
            dying = [s for s in self.world.sims if s.worker is not None and s.worker.stopped is not None
                     or s.worker is not None and s.worker.lost]
            sim = self.sim
            if dying:
                self.death(dying[0], stopped=dying[0].worker.stopped is not None)
                self.after()
                continue
            if sim is None:
                break
            m = self.m
            w = sim.worker
            if m.held:
                self.resume()
            elif self.world.store.in_txn or m.txn_outcomes or m.txn_enqueued:
                self.commit()
            elif w is not None and w.phase != "ready":
                self.ready()
            elif w is not None and w.call is not None:
                self.reply()
            elif w is not None and w.written:
                self.read_worker()
            elif m.retrying or Timer.TIMEOUT in sim.timers:
                self.fire_next_timer()
            elif m.running is None and not m.queue:
                break
            else:
                eng = sim.eng
                raise AssertionError(f"stuck: the engine runs {eng.current and eng.current.key} with its "
                                     f"worker {eng.worker.name}, stop_reason {eng.stop_reason}, "
                                     f"timers {sorted(t.name for t in sim.timers)}; {m}")
            self.agrees_with_the_model()
        else:
            raise AssertionError("the drain did not end")
        self.commit()
        self.agrees_with_the_model()
        for e in self.expects:
            if e.lost:
                assert len(e.caller.answers) <= 1, f"{e.caller} was answered {len(e.caller.answers)} times"
            else:
                assert len(e.caller.answers) == 1, f"{e.caller} was answered {len(e.caller.answers)} times"


SETTINGS = settings(max_examples=400, stateful_step_count=40, deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow,
                                                          HealthCheck.filter_too_much])

EngineMachine.TestCase.settings = SETTINGS
test_engine_against_the_model = EngineMachine.TestCase


class RacyEngineMachine(EngineMachine):
    """Stopped workers die when a rule says so (and may reply first), deaths
    may be reaped later, reloads happen, and starts may crash after stops."""

    RACES = True

    @precondition(lambda self: (w := self.worker("ready", stopped=True)) is not None
                  and w.call is not None)
    @rule(ok=st.booleans())
    def reply_racing_the_stop(self, ok: bool) -> None:
        self._reply(ok)

    @precondition(lambda self: any(s.worker is not None and s.worker.stopped is not None
                                   and not s.worker.lost for s in self.world.sims))
    @rule(reap=st.booleans())
    def die(self, reap: bool) -> None:
        sim = next(s for s in self.world.sims if s.worker is not None and s.worker.stopped is not None
                   and not s.worker.lost)
        self.death(sim, stopped=True, reap=reap)
        self.after()

    @precondition(lambda self: any(s.worker is not None and s.worker.lost for s in self.world.sims))
    @rule()
    def reap(self) -> None:
        sim = next(s for s in self.world.sims if s.worker is not None and s.worker.lost)
        self.death(sim, stopped=sim.worker.stopped is not None)
        self.after()

    @rule()
    def reload(self) -> None:
        self.world.reload()
        self.after()


def test_engine_with_races_against_the_model() -> None:
    """The racy machine: derandomized by default; ENGINE_RACES=N runs N random examples."""
    n = int(os.environ.get("ENGINE_RACES") or 0)
    RacyEngineMachine.TestCase.settings = (
        settings(SETTINGS, max_examples=n, derandomize=False) if n else settings(SETTINGS, max_examples=300))
    RacyEngineMachine.TestCase("runTest").runTest()


class BatchedEngineMachine(EngineMachine):
    """The orderly machine with calls sent ahead (batch_calls 3): the
    worker holds several calls and replies to them in order, drops one it
    has not started, and a cancel may race a reply."""

    BATCH = 3


class RacyBatchedEngineMachine(RacyEngineMachine):
    BATCH = 3


BATCH_SETTINGS = settings(SETTINGS, max_examples=400)
BatchedEngineMachine.TestCase.settings = BATCH_SETTINGS
test_batched_engine_against_the_model = BatchedEngineMachine.TestCase


def test_batched_engine_with_races_against_the_model() -> None:
    n = int(os.environ.get("ENGINE_RACES") or 0)
    RacyBatchedEngineMachine.TestCase.settings = (
        settings(BATCH_SETTINGS, max_examples=n, derandomize=False) if n else BATCH_SETTINGS)
    RacyBatchedEngineMachine.TestCase("runTest").runTest()
