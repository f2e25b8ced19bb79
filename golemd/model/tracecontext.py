"""Trace context without OpenTelemetry: the W3C `traceparent` an invocation
may be admitted with, and the IDs of the spans golemd makes of it
(golemd.tracing).

An invocation's span IDs, and its trace ID when it has no parent, are
derived from its agent, its idempotency key and its created_at (journaled)
rather than drawn at random: a caller's spans are exported only once its
outcome is committed, long after a callee was admitted under one of them,
and after a restart the same IDs come out again without being stored. An
invocation admitted with a parent (another agent's call or trigger effect,
or a `traceparent` from outside) is in its parent's trace.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from golemd.model.invocation import Invocation

# (trace ID, parent span ID, trace flags), as a traceparent carries them.
TraceParent = tuple[int, int, int]
SAMPLED = 0x01
MAX_TRACEPARENT = 512  # a later version may append fields; beyond this it is not a header

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)


def parse_traceparent(text: str) -> TraceParent | None:
    """A traceparent (W3C Trace Context, version 00 or a later one read as
    00 is), or None if it is not one."""
    m = _TRACEPARENT.fullmatch(text) if len(text) <= MAX_TRACEPARENT else None
    if m is None:
        return None
    version, trace, span, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(flags, 16)


def format_traceparent(trace_id: int, span_id: int, flags: int = SAMPLED) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"


def _digest(agent: str, inv: Invocation, part: str) -> bytes:
    # repr: created_at round-trips through the store's REAL exactly, and so does its repr
    return hashlib.blake2b(f"{agent}\0{inv.key}\0{inv.created_at!r}\0{part}".encode(),
                           digest_size=16).digest()


def span_id(agent: str, inv: Invocation, part: str = "invoke") -> int:
    """The ID of one of `inv`'s spans: "invoke" (the invocation), "run", or
    "effect N" (its durable effect number N)."""
    return int.from_bytes(_digest(agent, inv, part)[:8], "big") or 1


def context_of(agent: str, inv: Invocation) -> TraceParent:
    """(trace ID, span ID, flags) of `inv`'s own span."""
    own = span_id(agent, inv)
    parent = inv.trace_parent
    if parent is not None:
        return parent[0], own, parent[2]
    return int.from_bytes(_digest(agent, inv, "trace"), "big") or 1, own, SAMPLED


def callee_traceparent(agent: str, inv: Invocation, seq: int) -> str:
    """The traceparent of the invocation that `inv`'s call or trigger effect
    `seq` admits: that effect's span is its parent."""
    trace_id, _, flags = context_of(agent, inv)
    return format_traceparent(trace_id, span_id(agent, inv, f"effect {seq}"), flags)
