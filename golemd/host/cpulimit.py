"""A CPU time limit per invocation (`@agent(cpu_limit=SECONDS)`), inside the worker.

Before each call the soft RLIMIT_CPU is set to the CPU time the process has
used plus the limit (RLIMIT_CPU counts whole seconds, so the limit is
rounded up); the kernel sends SIGXCPU when it is reached (and again each
second after), and the handler raises CpuLimitExceeded in the agent's code.
After the call the soft limit goes back to none. Only the soft limit moves:
an unprivileged process cannot raise its hard limit once lowered, and the
next call needs a higher one. The invocation's own timeout stays the
backstop for code that never returns to Python (a C loop holding the GIL).
"""

from __future__ import annotations

import math
import resource
import signal
import time
from types import FrameType


class CpuLimitExceeded(BaseException):  # noqa: N818 - it must pass `except Exception` in agent code
    """The invocation used its type's cpu_limit of CPU time."""


class CpuLimit:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.hit = False  # set by the signal: the call fails whatever the agent did with it
        signal.signal(signal.SIGXCPU, self._signal)

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        self.hit = True
        raise CpuLimitExceeded(self.message())

    def message(self) -> str:
        return (f"the invocation used more than its cpu_limit of {self.seconds:g} s of CPU time "
                f"(@agent(cpu_limit=...)); it was stopped and the agent's state rolled back")

    def arm(self) -> None:
        self.hit = False
        used = time.process_time()
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = math.ceil(used + self.seconds)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))

    def disarm(self) -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
