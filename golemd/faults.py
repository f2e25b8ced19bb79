"""Test-only crash points: GOLEMD_CRASH_AT=LABEL[:N] kills the daemon with
SIGKILL the Nth time (default first) it passes LABEL. Unset, it costs one
dict lookup. Labels: enqueued (journal written, not committed), acked
(committed, reply not sent), result (agent answered, nothing journaled),
finished (outcome committed, callers not told).

GOLEMD_FAIL_COMMIT=PATH: while PATH exists, the next commit fails as on a
full disk, and PATH is removed (one failure per file), so a test can fail
exactly the commit it means to."""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("GOLEMD_CRASH_AT", "")
_label, _, _count = _spec.partition(":")
_left = int(_count or 1) if _label else 0


def crash_point(label: str) -> None:
    global _left
    if _left and label == _label:
        _left -= 1
        if _left == 0:
            os.kill(os.getpid(), signal.SIGKILL)


_fail_flag = os.environ.get("GOLEMD_FAIL_COMMIT", "")


def commit_fails() -> bool:
    if _fail_flag and os.path.exists(_fail_flag):
        os.unlink(_fail_flag)
        return True
    return False
