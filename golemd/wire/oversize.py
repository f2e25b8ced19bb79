"""Tell early that a message which has arrived in part can never fit.

msgpack.Unpacker checks max_array_len and max_map_len on a container's
header, but max_str_len and max_bin_len only once the whole string is
buffered: a header that declares a 4 GiB string, followed by nothing, leaves
it waiting for bytes that will never be accepted (max_buffer_size stops them
at the limit), and the connection waits for its read timeout. HeaderScan
reads the msgpack headers of the partial message as they arrive, nested ones
included, and says as soon as what they declare cannot fit in `limit` bytes:
a string or binary body longer than what is left, or more array items and
map entries than bytes left to hold them (each takes at least one):
TOO_LARGE. An extension type, which the protocol never uses (the Unpacker's
max_ext_len is 0, checked only once its body is in), is refused at its
header: PROTOCOL_ERROR.

It reads headers only: a body is skipped by its length, so a large string
costs nothing, and it stops for good after MAX_ITEMS items, so a message of
many small values costs a bounded walk (the buffer limit still holds).
Sans-IO: bytes in, a verdict out.
"""

from __future__ import annotations

import struct

from golemd.model.errors import Code, GolemError

__all__ = ["HeaderScan", "MAX_ITEMS"]

# Items (values and container headers) read per message before giving up.
MAX_ITEMS = 1024

# Fixed-size values: format byte -> bytes after it.
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
          0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_EXT = frozenset({0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8})  # ext 8/16/32, fixext 1-16
# Sized bodies: format byte -> (bytes of the length, what it is).
_SIZED = {0xD9: (1, "string"), 0xDA: (2, "string"), 0xDB: (4, "string"),
          0xC4: (1, "binary"), 0xC5: (2, "binary"), 0xC6: (4, "binary")}
# Containers: format byte -> (bytes of the count, elements per count, what it is).
_CONTAINERS = {0xDC: (2, 1, "array"), 0xDD: (4, 1, "array"), 0xDE: (2, 2, "map"), 0xDF: (4, 2, "map")}
_UINT = {1: struct.Struct(">B"), 2: struct.Struct(">H"), 4: struct.Struct(">I")}


class HeaderScan:
    """The headers of one message, from its first byte, fed as they arrive."""

    __slots__ = ("limit", "start", "_pos", "_skip", "_left", "_open", "_head", "_items", "_done")

    def __init__(self, limit: int, start: int = 0):
        self.limit = limit
        self.start = start  # the message's offset in its stream (for the caller)
        self._pos = 0  # bytes of the message read or skipped so far
        self._skip = 0  # body bytes still to skip
        self._left: list[int] = []  # items still to come in each open container
        self._open = 0  # sum(self._left): items declared and not yet read
        self._head = b""  # the start of a header cut by the end of a read
        self._items = 0
        self._done = False  # the message ended, its walk gave up, or the verdict is in

    def feed(self, data: bytes | memoryview) -> GolemError | None:
        """Read the next bytes of the message; the error to answer it with
        (TOO_LARGE, PROTOCOL_ERROR) as soon as its headers show one, else None."""
        if self._done:
            return None
        buf = memoryview(data)
        if self._skip:
            n = min(self._skip, len(buf))
            self._skip -= n
            self._pos += n
            buf = buf[n:]
            if not buf:
                return None
        if self._head:
            buf = memoryview(self._head + bytes(buf))
            self._pos -= len(self._head)
            self._head = b""
        return self._walk(buf)

    def _walk(self, buf: memoryview) -> GolemError | None:
        i, end = 0, len(buf)
        while i < end:
            if self._items >= MAX_ITEMS:
                self._done = True
                return None
            b = buf[i]
            need = 1
            body = 0
            count = 0
            kind = ""
            if b <= 0x7F or b >= 0xE0:
                pass  # fixint
            elif b <= 0x8F:
                count, kind = 2 * (b & 0x0F), "map"
            elif b <= 0x9F:
                count, kind = b & 0x0F, "array"
            elif b <= 0xBF:
                body, kind = b & 0x1F, "string"
            elif b in _FIXED:
                need += _FIXED[b]
            elif b in _EXT:
                self._done = True
                return GolemError(Code.PROTOCOL_ERROR, f"a message holds a msgpack extension type "
                                  f"(format byte 0x{b:02x}): the protocol uses none")
            elif b in _SIZED:
                width, kind = _SIZED[b]
                need += width
                if end - i < need:
                    break
                body = _UINT[width].unpack_from(buf, i + 1)[0]
            elif b in _CONTAINERS:
                width, per, kind = _CONTAINERS[b]
                need += width
                if end - i < need:
                    break
                count = per * _UINT[width].unpack_from(buf, i + 1)[0]
            else:
                self._done = True  # 0xC1, never used: the unpacker refuses it
                return None
            if end - i < need:
                break
            i += need
            self._pos += need
            self._items += 1
            self._took_one()
            if count:
                self._left.append(count)
                self._open += count
            # The smallest the message can be, given what its headers declare.
            least = self._pos + body + self._open
            if least > self.limit:
                self._done = True
                what = (f"{kind} of {body} bytes" if body else
                        f"{kind} of {count // 2 if kind == 'map' else count} "
                        f"{'entries' if kind == 'map' else 'items'}")
                return GolemError(Code.TOO_LARGE, f"a message declares a {what}: at least {least} "
                                  f"bytes, over the {self.limit}-byte limit")
            if body:
                n = min(body, end - i)
                i += n
                self._pos += n
                self._skip = body - n
            if not self._left and not count:
                self._done = True  # the whole message is read
                return None
        self._head = bytes(buf[i:])
        self._pos += len(self._head)
        return None

    def _took_one(self) -> None:
        """An item was read: it fills a place in the innermost open container."""
        left = self._left
        if left:
            left[-1] -= 1
            self._open -= 1
            while left and left[-1] == 0:
                left.pop()
