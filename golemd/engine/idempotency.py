"""Idempotency keys: making new ones, and answering for a key whose
invocation has ended (its stored outcome, or why there is none)."""

from __future__ import annotations

import uuid
from typing import Any

import msgpack

from golemd.model.errors import Code, GolemError
from golemd.model.states import InvocationStatus as S

_ENDED = frozenset({S.COMPLETED.value, S.FAILED.value})


def _key_prefix() -> str:
    """All of a random version-4 UUID but its last 8 hex digits."""
    return str(uuid.uuid4())[:-8]


class KeyMaker:
    """Version-4 UUIDs, as uuid4() makes, at a tenth of its cost: 90 random
    bits drawn once per 2**32 keys, then a counter. Unique, not secret (a key
    is not a credential: the socket's access rules are)."""

    def __init__(self) -> None:
        self._prefix, self._count = _key_prefix(), 0

    def new(self) -> str:
        n = self._count
        if n >> 32:
            self._prefix, n = _key_prefix(), 0
        self._count = n + 1
        return f"{self._prefix}{n:08x}"


def conflict(agent: str, key: str, method: str) -> GolemError:
    return GolemError(Code.IDEMPOTENCY_CONFLICT,
                      f"idempotency key {key!r} was already used on {agent} for {method}() "
                      "with other arguments (or another method); nothing was enqueued")


def stored_answer(agent: str, key: str, row: dict[str, Any], args_packed: bytes, mode: str) -> dict[str, Any]:
    """The reply for a key whose invocation is no longer in memory, from its
    journal row; raises the error it ended with (or why it has no outcome)."""
    if bytes(row["args"]) != args_packed:
        raise conflict(agent, key, row["method"])
    if row["status"] == S.CANCELED.value:
        raise GolemError(Code.CANCELED, f"invocation {key!r} was canceled")
    if row["status"] not in _ENDED:
        # Journaled, not in memory: it ran, and its outcome could not be saved.
        raise GolemError(Code.STORAGE_FULL, f"invocation {key!r} ran but its outcome could not be "
                         "saved; it stays journaled and runs again after a restart (or cancel it)")
    outcome = msgpack.unpackb(row["outcome"], raw=False, strict_map_key=False) if row["outcome"] else {}
    if "error" in outcome:
        raise GolemError.from_wire(outcome["error"])
    if mode != "await":
        return {"idempotency_key": key, "status": "completed", "result": outcome.get("result")}
    return {"idempotency_key": key, "result": outcome.get("result")}
