"""The worker's half of durable execution: each call's effects, numbered,
replayed from the journal the daemon sent with the call, or asked of the
daemon and waited for (golemd.wire.worker: `effect`, `effect_result`).

The daemon journals an effect's result before it answers, so what the agent
sees is always what a re-run will see. A replayed effect must be the one
journaled at its number (same kind, same request bytes): anything else is
nondeterminism, which fails the invocation whatever the agent does with the
exception (it is a BaseException, and the failure is kept on the context).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgpack

from golemd.wire.codec import pack


class Channel(Protocol):
    def effect(self, call_id: int, seq: int, kind: str, req: bytes, res: bytes | None) -> bytes:
        """Send an effect to the daemon; its journaled result (msgpack bytes)."""
        ...


class Abandoned(BaseException):  # noqa: N818 - not an error of the agent's: it must not be caught as one
    """Raised into agent code once its invocation has failed for good
    (nondeterminism): a BaseException so that `except Exception` passes it."""


_current: EffectContext | None = None


def current() -> EffectContext:
    if _current is None:
        raise RuntimeError("durable effects (remote, step, sleep, promise, complete_promise) "
                           "work only inside an agent's invocation run by golemd")
    return _current


class EffectContext:
    """The effects of one call: `journal` holds [kind, req, res or None] by seq."""

    def __init__(self, channel: Channel, call_id: int, journal: list[list[Any]] | None) -> None:
        self.channel = channel
        self.call_id = call_id
        self.journal = journal or []
        self.seq = 0
        self.failure: dict[str, Any] | None = None  # set once it failed for good

    def __enter__(self) -> EffectContext:
        global _current
        _current = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _current
        _current = None

    def effect(self, kind: str, req: dict[str, Any], run: Callable[[], Any] | None = None) -> dict[str, Any]:
        """The result of effect number `seq`, as {"value": V} or {"error": {...}}:
        replayed, or (`run` for a step, run here first) asked of the daemon."""
        if self.failure is not None:
            raise Abandoned(self.failure["message"])
        seq = self.seq
        try:
            packed = pack(req)
        except Exception as exc:
            raise TypeError(f"the arguments of {kind} effect #{seq} cannot be journaled "
                            f"(msgpack values only): {exc}") from None
        self.seq += 1
        if seq < len(self.journal):
            j_kind, j_req, j_res = self.journal[seq]
            if j_kind != kind or bytes(j_req) != packed:
                self._nondeterminism(seq, kind, req, j_kind, j_req)
            if j_res is not None:
                return _unpack(j_res)
        res: bytes | None = None
        raised: BaseException | None = None
        if run is not None:
            res, raised = _run_step(run)
        answer = self.channel.effect(self.call_id, seq, kind, packed, res)
        if raised is not None:
            raise raised  # the step's own exception, the first time: its traceback is the agent's
        return _unpack(answer)

    def _nondeterminism(self, seq: int, kind: str, req: dict[str, Any], j_kind: str, j_req: bytes) -> None:
        was = _unpack(j_req)
        self.failure = {
            "type": "golemd.Nondeterminism",
            "message": f"effect #{seq} differs from the journal on this re-run: it was {j_kind} {was!r}, "
                       f"now it is {kind} {req!r}; the invocation fails and the agent goes on from its "
                       "last saved state",
            "traceback": "",
        }
        raise Abandoned(self.failure["message"])


def _run_step(run: Callable[[], Any]) -> tuple[bytes, BaseException | None]:
    try:
        value = run()
    except Exception as exc:
        cls = type(exc)
        name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
        return pack({"error": {"type": name, "message": str(exc)}}), exc
    try:
        return pack({"value": value}), None
    except Exception as exc:
        raise TypeError(f"a step's result must be a msgpack value, not {type(value).__name__}: {exc}") from None


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
