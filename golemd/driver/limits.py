"""A worker's memory limit: which setting it comes from, and what a
MemoryError under it says.

Python's MemoryError carries no message, so an agent that hit RLIMIT_AS
failed with "MemoryError: " and the user could not tell which limit, or
that there was one. The limit is the type's `@agent(memory_limit_mb=...)`
if it has one, else the daemon's `memory_limit_mb` (0: none). The worker is
told the message at init (`oom`) and gives it to a MemoryError without one
(golemd.host.runtime.error_info).
"""

from __future__ import annotations

from typing import Any


def memory_limit(type_info: dict[str, Any] | None, daemon_mb: int, type_name: str) -> tuple[int, str]:
    """(megabytes, the setting that set them); 0 when no limit applies."""
    own = (type_info or {}).get("memory_limit_mb")
    if own:
        return int(own), f"@agent(memory_limit_mb={own}) on {type_name}"
    if daemon_mb:
        return daemon_mb, f"the daemon's memory_limit_mb = {daemon_mb} (golemd.toml), for types without their own"
    return 0, "no memory_limit_mb (neither the type's nor the daemon's)"


def oom_message(limit: tuple[int, str]) -> str:
    """What a MemoryError without a message says, under this limit."""
    mb, source = limit
    if mb:
        return f"out of memory: the worker's address space reached its limit of {mb} MiB, set by {source}"
    return f"out of memory, with {source} set: the machine itself ran short"
