"""HeaderScan: a message that has arrived in part is known to be too large
as soon as its headers, nested ones included, declare more than fits."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golemd.model.errors import Code, GolemError
from golemd.wire.oversize import MAX_ITEMS, HeaderScan

LIMIT = 64 * 1024 * 1024
HUGE = 0xFFFF_FFFF


def verdict(data: bytes, limit: int = LIMIT, chunks: list[int] | None = None) -> GolemError | None:
    """Feed `data` cut at `chunks` (offsets); the first verdict."""
    s = HeaderScan(limit)
    cuts = [0, *(chunks or []), len(data)]
    for a, b in zip(cuts, cuts[1:], strict=False):
        err = s.feed(data[a:b])
        if err is not None:
            return err
    return None


def scan(data: bytes, limit: int = LIMIT, chunks: list[int] | None = None) -> str | None:
    """The message of a TOO_LARGE verdict (None: none)."""
    err = verdict(data, limit, chunks)
    if err is None:
        return None
    assert err.code == Code.TOO_LARGE, err
    return err.message


def every_cut(data: bytes, limit: int = LIMIT) -> list[str | None]:
    """The verdict with the bytes arriving one at a time, and cut in two at every offset."""
    s = HeaderScan(limit)
    first = next((v for i in range(len(data)) if (v := s.feed(data[i:i + 1])) is not None), None)
    verdicts = [first.message if first is not None else None]
    verdicts += [scan(data, limit, [i]) for i in range(1, len(data))]
    return verdicts


def request_head(**fields: object) -> bytes:
    """The start of a request map whose last field, `args`, is an array of one value to come."""
    head = {"v": 1, "id": 7, "op": "invoke", "agent": 'CounterAgent("c1")', "method": "add", **fields}
    packed = msgpack.packb(head)
    assert packed[0] & 0xF0 == 0x80
    return bytes([packed[0] + 1]) + packed[1:] + msgpack.packb("args") + b"\x91"


@pytest.mark.parametrize(("header", "what"), [
    (b"\xdb" + HUGE.to_bytes(4, "big"), "string of 4294967295 bytes"),
    (b"\xc6" + HUGE.to_bytes(4, "big"), "binary of 4294967295 bytes"),
    (b"\xdb" + (LIMIT + 1).to_bytes(4, "big"), "string of 67108865 bytes"),
])
def test_a_huge_body_is_told_from_its_header_alone(header: bytes, what: str):
    assert scan(header) == (f"a message declares a {what}: at least {len(header) + int.from_bytes(header[1:5], 'big')} "
                            f"bytes, over the {LIMIT}-byte limit")
    assert all(v is not None and what in v for v in every_cut(header))


def test_a_huge_string_nested_in_a_request_is_told():
    data = request_head() + b"\xdb" + HUGE.to_bytes(4, "big")
    assert all(v is not None and "string of 4294967295 bytes" in v for v in every_cut(data))
    # Deeper: a map in a list in the arguments.
    deep = request_head() + b"\x92\x01\x81" + msgpack.packb("k") + b"\xc6" + HUGE.to_bytes(4, "big")
    assert "binary of 4294967295 bytes" in (scan(deep) or "")


def test_after_a_large_body_that_fits_the_next_header_is_read():
    body = b"x" * 100_000
    data = b"\x92" + b"\xc6" + len(body).to_bytes(4, "big") + body + b"\xdb" + HUGE.to_bytes(4, "big")
    assert scan(data) is not None
    assert scan(data, chunks=[10, 50_000, 100_004, 100_007]) is not None


def test_a_string_that_just_fits_is_not_refused():
    n = LIMIT - 5
    assert scan(b"\xdb" + n.to_bytes(4, "big")) is None
    assert scan(b"\xdb" + (n + 1).to_bytes(4, "big")) is not None


def test_containers_need_a_byte_per_item():
    assert scan(b"\xdc" + (60).to_bytes(2, "big"), limit=100) is None
    assert "map of 60 entries" in (scan(b"\xde" + (60).to_bytes(2, "big"), limit=100) or "")
    # Items declared by enclosing containers count too.
    assert "array of 40 items" in (scan(b"\x92" + b"\xdc\x00\x3c" + b"\xdc\x00\x28", limit=100) or "")


def test_it_gives_up_after_max_items():
    many = b"\xdd" + (MAX_ITEMS + 10).to_bytes(4, "big") + b"\x00" * MAX_ITEMS
    assert scan(many + b"\xdb" + HUGE.to_bytes(4, "big")) is None  # bounded work: the buffer limit still holds
    assert scan(many[:-10] + b"\xdb" + HUGE.to_bytes(4, "big")) is not None


@pytest.mark.parametrize("header", [b"\xd4\x01", b"\xd8\xff", b"\xc7\x05\x01", b"\xc9" + HUGE.to_bytes(4, "big")])
def test_an_extension_type_is_refused_at_its_header(header: bytes):
    for data in (header, request_head() + header):
        err = verdict(data[:len(data) - len(header) + 1])  # its format byte is enough
        assert err is not None and err.code == Code.PROTOCOL_ERROR, err
        assert "extension type" in err.message


def test_it_stops_at_the_end_of_the_message_and_at_bytes_msgpack_never_uses():
    s = HeaderScan(LIMIT)
    assert s.feed(msgpack.packb({"a": [1, 2, "x" * 40]})) is None
    assert s.feed(b"\xdb" + HUGE.to_bytes(4, "big")) is None  # another message's: not this one's
    assert scan(b"\x92\xc1\xdb" + HUGE.to_bytes(4, "big")) is None


values = st.recursive(  # no extension types: the protocol uses none
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats()
    | st.text(max_size=300) | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=10), inner, max_size=10),
    max_leaves=60)


@settings(max_examples=300, deadline=None)
@given(value=values, cut=st.integers(min_value=0, max_value=10_000), data=st.data())
def test_a_message_that_fits_is_never_refused(value: object, cut: int, data: st.DataObject):
    packed = msgpack.packb(value, use_bin_type=True)
    offsets = sorted(data.draw(st.lists(st.integers(min_value=1, max_value=max(1, len(packed) - 1)),
                                        max_size=5, unique=True)))
    assert scan(packed, limit=len(packed), chunks=[o for o in offsets if o < len(packed)]) is None
    assert scan(packed[:cut % (len(packed) + 1)], limit=len(packed)) is None
