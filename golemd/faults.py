"""Test-only crash points: GOLEMD_CRASH_AT=LABEL[:N] kills the daemon with
SIGKILL the Nth time (default first) it passes LABEL. Unset, it costs one
dict lookup. Labels: enqueued (journal written, not committed), acked
(committed, reply not sent), result (agent answered, nothing journaled),
finished (outcome committed, callers not told)."""

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
