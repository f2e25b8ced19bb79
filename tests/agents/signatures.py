"""An agent type that says what its methods were given: how msgpack values
bind to annotations, and the signatures the `types` op describes."""

from __future__ import annotations

import time
from typing import Any

from golemd import agent, timeout


class Thing:
    """An annotation golemd cannot check: anything goes."""


@agent(timeout=30)
class Signatures:
    """Reports the Python types its arguments arrived as."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def constructor_got(self) -> list[str]:
        return [type(a).__name__ for a in self.args]

    def got(self, i: int, f: float, t: tuple[int, ...], b: bytes, o: dict[str, int] | None,
            x: Thing, xs: list[int]) -> list[str]:
        return [type(v).__name__ for v in (i, f, t, b, o, x, xs)]

    @timeout(0.5)
    def limited(self, seconds: float = 0.0) -> float:
        time.sleep(seconds)
        return seconds

    def kinds(self, a: int, /, b: str = "b", *rest: int, flag: bool = False, **extra: Any) -> list[Any]:
        return [a, b, list(rest), flag, extra]

    def keyword_only(self, *, k: int) -> int:
        return k
