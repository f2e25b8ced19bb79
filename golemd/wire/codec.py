"""The client wire protocol's codec: msgpack framing, limits, error replies.

msgpack maps, back to back on a Unix stream socket. Import-safe: no asyncio,
no side effects, so golemctl can import it and still start fast.
docs/protocol.md is the prose version of the protocol; each op is defined,
request shape included, in golemd/wire/ops/ (see its __init__).
"""

from __future__ import annotations

from typing import Any

import msgpack

from golemd.model.errors import GolemError
from golemd.wire.ops import PROTOCOL_VERSION

__all__ = ["MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "error_reply", "make_unpacker", "pack",
           "small_reads"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_NAME = 256


def __getattr__(name: str) -> Any:
    # Request shapes and their limits are defined with their ops in
    # golemd/wire/ops/, and still importable from here. Loaded on first use:
    # the registry imports every op module, and workers and golemctl, which
    # import this module, need none of them.
    if name in ("OPS", "validate_request"):
        from golemd.wire.ops import registry

        return getattr(registry, name)
    if name in ("MAX_IDEMPOTENCY_KEY", "MAX_TIMEOUT", "MAX_TIMESTAMP", "MODES"):
        from golemd.wire.ops import invoke

        return getattr(invoke, name)
    raise AttributeError(f"module 'golemd.wire.codec' has no attribute {name!r}")


# One Packer per process: packb() makes a new one per call, and each allocates
# a 256 KiB buffer, which a daemon or worker that runs cold (W2's 100 workers
# taking turns) pays for in cache misses. Packer.pack resets itself on error,
# but its buffer never shrinks: after a message over 1 MiB it is replaced.
_packer = msgpack.Packer(use_bin_type=True)
_packing = False  # agent code run while packing (a mapping's items()) may pack too


READ_BYTES = 1 << 16


def small_reads(transport: Any) -> None:
    """Have an asyncio transport read at most 64 KiB at a time. It reads
    `max_size` (256 KiB) by default, into a new bytes object: glibc serves an
    allocation that large with mmap, and then the read of a 100-byte message
    costs about 14 us (mmap, mremap, munmap, a page fault) instead of 2, twice
    per warm call. A bigger message takes more reads, at no cost worth naming."""
    if hasattr(transport, "max_size"):
        transport.max_size = READ_BYTES


def pack(obj: Any) -> bytes:
    global _packer, _packing
    if _packing:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    _packing = True
    try:
        data: bytes = _packer.pack(obj)
    finally:
        _packing = False
    if len(data) > 1 << 20:
        _packer = msgpack.Packer(use_bin_type=True)
    return data


def make_unpacker(max_buffer_size: int = MAX_MESSAGE_BYTES, strict_map_key: bool = True) -> msgpack.Unpacker:
    """An Unpacker whose limits bound what one message can make us allocate."""
    return msgpack.Unpacker(
        raw=False,
        # Its first buffer: 64 KiB, grown as a message needs, where the default
        # of 1 MiB is an mmap and munmap per unpacker (one per worker, twice).
        read_size=min(READ_BYTES, max_buffer_size),
        max_buffer_size=max_buffer_size,
        strict_map_key=strict_map_key,
        max_str_len=max_buffer_size,
        max_bin_len=max_buffer_size,
        max_array_len=1_000_000,
        max_map_len=1_000_000,
        max_ext_len=0,
    )


def error_reply(rid: int | None, err: GolemError) -> dict[str, Any]:
    return {"id": rid, "error": err.to_wire()}
