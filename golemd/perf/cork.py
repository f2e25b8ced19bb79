"""Corking of replies: what is sent while corked leaves in one write per client.

Held around each burst of work that can answer many callers at once (a read
of requests, a worker's reply, a group commit's callbacks), so that a burst
costs one write per connection, and a lone reply is written at once, without
waiting a loop round for its turn.
"""

from __future__ import annotations

from typing import Protocol


class Flushable(Protocol):
    def flush(self) -> None: ...


_depth = 0
_dirty: list[Flushable] = []


def hold() -> None:
    global _depth
    _depth += 1


def release() -> None:
    global _depth
    _depth -= 1
    if _depth == 0 and _dirty:
        while _dirty:  # a flush may not add more, but be safe if one does
            batch = _dirty[:]
            _dirty.clear()
            for item in batch:
                item.flush()


enabled = True  # perf_off = ["cork"]: every reply is its own write (to measure what corking does)


def held() -> bool:
    return _depth > 0 and enabled


def later(item: Flushable) -> None:
    """Flush `item` when the outermost hold is released (once, however often asked)."""
    _dirty.append(item)
