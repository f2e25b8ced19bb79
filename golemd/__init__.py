"""golemd: durable, isolated, sequential Python agents on one machine.

`from golemd import agent, timeout` is the SDK. It is loaded on first use, so
that golemctl, which imports golemd's small protocol modules, starts fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["agent", "timeout", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("agent", "timeout"):
        from golemd import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'golemd' has no attribute {name!r}")
