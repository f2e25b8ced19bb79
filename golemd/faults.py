"""Test-only crash points: GOLEMD_CRASH_AT=LABEL[:N] kills the daemon with
SIGKILL the Nth time (default first) it passes LABEL. Unset, it costs one
dict lookup. Labels: enqueued (journal written, not committed), acked
(committed, reply not sent), result (agent answered, nothing journaled),
finished (outcome committed, callers not told), start (an invocation about
to be sent to its worker), effect (a durable effect other than a step asked
by a worker, nothing journaled), effect_done (an effect's result committed,
the worker not told).

GOLEMD_KILL_WORKER_AT=LABEL[:N]: at the Nth pass of LABEL (start, effect,
effect_done), SIGKILL the worker of that agent instead of the daemon
(golemd.testing's crash matrix uses both).

GOLEMD_FAIL_COMMIT=PATH: while PATH exists, the next commit that someone
waits on fails as on a full disk, and PATH is removed (one failure per
file), so a test can fail exactly the commit it means to. A commit nobody
waits on (agents' rows written a second after their calls, Store.write_later)
is not that commit."""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("GOLEMD_CRASH_AT", "")
_label, _, _count = _spec.partition(":")
_left = int(_count or 1) if _label else 0


def crash_point(label: str) -> None:
    """Kill the daemon here if GOLEMD_CRASH_AT names this pass of `label`."""
    global _left
    if _left and label == _label:
        _left -= 1
        if _left == 0:
            os.kill(os.getpid(), signal.SIGKILL)


_kspec = os.environ.get("GOLEMD_KILL_WORKER_AT", "")
_klabel, _, _kcount = _kspec.partition(":")
_kleft = int(_kcount or 1) if _klabel else 0


def kill_worker_point(label: str) -> bool:
    """True at the pass of LABEL where the worker must be killed."""
    global _kleft
    if _kleft and label == _klabel:
        _kleft -= 1
        return _kleft == 0
    return False


# Whether any crash or kill point is set: without, the engine is given no crash hook.
ARMED = bool(_left or _kleft)

_fail_flag = os.environ.get("GOLEMD_FAIL_COMMIT", "")


def commit_fails() -> bool:
    if _fail_flag and os.path.exists(_fail_flag):
        os.unlink(_fail_flag)
        return True
    return False
