"""Property-based fuzzing of what parses untrusted input: the request decoder
and validator, and the agent ID and literal parsers."""

from __future__ import annotations

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golemd.model.agent_id import format_literal, parse_agent_id, parse_literal
from golemd.model.errors import Code, GolemError
from golemd.wire.codec import OPS, make_unpacker, validate_request

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text() | st.binary(max_size=20))
wire_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)
literal_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(st.characters(blacklist_categories=("Cs",))),
    lambda kids: st.lists(kids, max_size=4) | st.tuples(kids, kids)
    | st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), max_size=6), kids, max_size=4),
    max_leaves=15)


@FUZZ
@given(st.dictionaries(st.sampled_from(["v", "id", "op", "agent", "method", "args", "mode",
                                         "idempotency_key", "timeout", "last", "follow", "x"]),
                       wire_values | st.sampled_from(sorted(OPS)), max_size=8))
def test_validate_request_only_ever_raises_golem_errors(msg):
    try:
        rid, op, req = validate_request(msg)
    except GolemError as err:
        assert err.code in (Code.BAD_REQUEST, Code.UNSUPPORTED_VERSION)
        return
    assert op in OPS and isinstance(rid, int) and req is msg


@FUZZ
@given(st.binary(max_size=2000))
def test_decoder_survives_random_bytes(data):
    unpacker = make_unpacker(max_buffer_size=1 << 16)
    unpacker.feed(data)
    try:
        for msg in unpacker:
            try:
                validate_request(msg)
            except GolemError:
                pass
    except (ValueError, msgpack.UnpackException, TypeError):
        pass  # the daemon answers PROTOCOL_ERROR and hangs up


def _check_agent_id(text: str) -> None:
    """Either a clean INVALID_AGENT_ID, or an ID whose canonical form parses back to it."""
    try:
        aid = parse_agent_id(text)
    except GolemError as err:
        assert err.code == Code.INVALID_AGENT_ID and err.message
        return
    assert parse_agent_id(aid.canonical) == aid and msgpack.packb(list(aid.args))


@FUZZ
@given(st.text(max_size=300))
def test_agent_id_parser_accepts_or_refuses_cleanly(text):
    _check_agent_id(text)


@FUZZ
@given(st.text(alphabet="A()[]{}'\",: 0123456789-._/xe\\", max_size=80))
def test_agent_id_parser_on_id_like_text(text):
    _check_agent_id(text)


@FUZZ
@given(st.lists(literal_values, max_size=4), st.sampled_from(["", "dev/", "a-b_1/"]))
def test_canonical_form_round_trips(args, env):
    text = f"{env}T(" + ", ".join(format_literal(a) for a in args) + ")"
    aid = parse_agent_id(text)
    assert aid.args == tuple(args)
    assert parse_agent_id(aid.canonical) == aid


@FUZZ
@given(st.text(max_size=200))
def test_cli_literal_parser_accepts_or_refuses_cleanly(text):
    try:
        value = parse_literal(text)
    except GolemError as err:
        assert err.code == Code.USAGE
        return
    msgpack.packb(value)  # whatever it accepts can be sent


@given(st.text(max_size=200))
def test_quote_is_exactly_json(text):
    """Canonical IDs are stored and compared: golemd's own quoting must stay
    byte for byte json.dumps(s, ensure_ascii=False), surrogates included."""
    import json

    from golemd.model.agent_id import quote

    assert quote(text) == json.dumps(text, ensure_ascii=False)


@given(st.text(alphabet=st.characters(max_codepoint=0x40), max_size=50) | st.just("\ud800x\udfff"))
def test_quote_is_exactly_json_on_control_characters(text):
    import json

    from golemd.model.agent_id import quote

    assert quote(text) == json.dumps(text, ensure_ascii=False)
