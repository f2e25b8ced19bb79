"""golemd: durable, isolated, sequential Python agents on one machine.

`from golemd import agent, timeout` is the SDK, and `remote`, `step`,
`sleep`, `promise`, `complete_promise`, `RemoteError` and `Promise` are
durable execution (golemd.durable). They are loaded on first use, so that
golemctl, which imports golemd's small protocol modules, starts fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
_DURABLE = ("remote", "step", "sleep", "promise", "complete_promise", "RemoteError", "Promise", "StepError")
__all__ = ["agent", "timeout", *_DURABLE, "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("agent", "timeout"):
        from golemd import sdk

        return getattr(sdk, name)
    if name in _DURABLE:
        from golemd import durable

        return getattr(durable, name)
    raise AttributeError(f"module 'golemd' has no attribute {name!r}")
