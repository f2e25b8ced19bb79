"""The oplog's query grammar (golemd/model/oplog_query.py): parsing, matching, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from golemd.model.oplog_query import FIELDS, Query, QueryError, Term, parse

ENQUEUED = {"index": 2, "ts": 1.0, "kind": "enqueued", "idempotency_key": "job-7", "method": "add",
            "args": [5, "Blue hat"]}
COMPLETED = {"index": 4, "ts": 2.0, "kind": "completed", "idempotency_key": "job-7", "method": "add",
             "result": {"total": 5}}
NONE_RESULT = {"index": 5, "ts": 2.5, "kind": "completed", "idempotency_key": "k2", "method": "get",
               "result": None}
FAILED = {"index": 6, "ts": 3.0, "kind": "failed", "idempotency_key": "k3", "method": "reserve",
          "error": {"code": "INVOCATION_FAILED", "message": "ValueError: no hat left"}}
RETRIED = {"index": 7, "ts": 4.0, "kind": "retried", "idempotency_key": "k4", "method": "add",
           "detail": "attempt 2 after 0.1s: killed by SIGKILL"}
CALL = {"index": 8, "ts": 5.0, "kind": "effect_done", "idempotency_key": "o1",
        "detail": "#1 call Inventory(\"main\").reserve('hat') -> 2",
        "effect": {"seq": 1, "kind": "call", "target": 'Inventory("main")', "callee_key": "call-ab-1",
                   "request": {"agent": 'Inventory("main")', "method": "reserve", "args": ["hat"]}, "result": 2}}
STEP_ERROR = {"index": 9, "ts": 6.0, "kind": "effect", "idempotency_key": "o1", "detail": "#2 step f",
              "effect": {"seq": 2, "kind": "step", "target": "make_token", "request": {"fn": "make_token", "args": []},
                         "error": {"type": "KeyError", "message": "'x'"}}}
CALL_ERROR = {"index": 10, "ts": 7.0, "kind": "effect", "idempotency_key": "o2", "detail": "#0 call",
              "effect": {"seq": 0, "kind": "call", "target": 'Inventory("x")',
                         "request": {"agent": 'Inventory("x")', "method": "nope", "args": []},
                         "error": {"code": "UNKNOWN_METHOD", "message": "no method nope"}}}
CREATED = {"index": 1, "ts": 0.5, "kind": "created"}
LOG = [CREATED, ENQUEUED, COMPLETED, NONE_RESULT, FAILED, RETRIED, CALL, STEP_ERROR, CALL_ERROR]


def hits(query: str) -> list[int]:
    q = parse(query)
    return [e["index"] for e in LOG if q.matches(e)]


# -- parsing -----------------------------------------------------------------------


@pytest.mark.parametrize("text, terms", [
    ("", ()),
    ("   ", ()),
    ("hat", (Term(None, "hat"),)),
    ("Kind:FAILED", (Term("kind", "failed"),)),
    ("idempotency_key:Job-7 key:x", (Term("key", "job-7"), Term("key", "x"))),
    ("-kind:started  -hat", (Term("kind", "started", True), Term(None, "hat", True))),
    ('"no hat left"', (Term(None, "no hat left"),)),
    ('error:"no hat" method:add', (Term("error", "no hat"), Term("method", "add"))),
    ('-"a b"', (Term(None, "a b", True),)),
    ('"say \\"hi\\" \\\\ there"', (Term(None, 'say "hi" \\ there'),)),
    ('Inventory("main")', (Term(None, 'inventory("main")'),)),
    ('target:Inventory("main")', (Term("target", 'inventory("main")'),)),
    ('"a:b" "-1"', (Term(None, "a:b"), Term(None, "-1"))),
    ("key:a:b", (Term("key", "a:b"),)),
    ("--x", (Term(None, "-x", True),)),
])
def test_parse(text, terms):
    assert parse(text) == Query(terms)


@pytest.mark.parametrize("text, problem", [
    ("bogus:x", "unknown field 'bogus'"),
    ("http://example.com", "unknown field 'http'"),
    ("kind:", "needs a value"),
    ("kind: failed", "needs a value"),
    ('"open', "is not closed"),
    ('error:"open', "is not closed"),
    ('"a"b', "a space must follow"),
    ("-", "needs a term"),
    ("hat - x", "needs a term"),
])
def test_parse_refuses(text, problem):
    with pytest.raises(QueryError) as e:
        parse(text)
    assert problem in str(e.value)


def test_every_documented_field_parses():
    for name in FIELDS:
        assert parse(f"{name}:x").terms[0].field == FIELDS[name]


# -- matching ----------------------------------------------------------------------


@pytest.mark.parametrize("query, want", [
    ("", [1, 2, 4, 5, 6, 7, 8, 9, 10]),
    # bare terms: anywhere, case-insensitive
    ("hat", [2, 6, 8]),
    ("BLUE", [2]),
    ("sigkill", [7]),
    ("total", [4]),
    ("make_token", [9]),
    ("keyerror", [9]),
    ("unknown_method", [10]),
    ("job-7", [2, 4]),
    ('Inventory("main")', [8]),
    ('"no hat left"', [6]),
    ('"hat left no"', []),
    # exact fields: the whole value, * for any run
    ("kind:completed", [4, 5]),
    ("kind:effect", [9, 10]),
    ("kind:effect*", [8, 9, 10]),
    ("kind:*ed", [1, 2, 4, 5, 6, 7]),
    ("key:job", []),
    ("key:job-*", [2, 4]),
    ("idempotency_key:JOB-7", [2, 4]),
    ("method:add", [2, 4, 7]),
    ("method:res*", [6]),
    ("code:invocation_failed", [6]),
    ("code:UNKNOWN_METHOD", [10]),
    ("code:*", [6, 10]),
    ("effect:call", [8, 10]),
    ("effect:step", [9]),
    # text fields: a part of the text, as golemctl shows values
    ("args:5", [2]),
    ('args:"\\"blue hat\\""', [2]),
    ("args:hat", [2, 8]),
    ("result:5", [4]),
    ("result:none", [5]),
    ("result:2", [8]),
    ("error:INVOCATION_FAILED", [6]),
    ("error:left", [6]),
    ("error:keyerror", [9]),
    ("target:inventory", [8, 10]),
    ("target:make", [9]),
    ("detail:attempt", [7]),
    # AND and negation
    ("method:add kind:completed", [4]),
    ("hat -kind:failed", [2, 8]),
    ("-kind:effect* -kind:created", [2, 4, 5, 6, 7]),
    ("-code:*", [1, 2, 4, 5, 7, 8, 9]),
    ("-hat -hat", [1, 4, 5, 7, 9, 10]),
])
def test_matches(query, want):
    assert hits(query) == want


def test_a_glob_is_not_a_regular_expression():
    assert hits("key:job.7") == [] and hits("method:a.d") == []
    entry: dict[str, Any] = {"index": 1, "ts": 1.0, "kind": "enqueued", "idempotency_key": "a.b(c)[d]"}
    assert parse("key:a.b(c)[d]").matches(entry) and parse("key:a.*").matches(entry)
    assert not parse("key:a").matches(entry)


def test_entries_with_unknown_or_missing_fields_still_match_by_what_they_have():
    odd: dict[str, Any] = {"index": 1, "ts": 1.0, "kind": "something_new", "extra": {"x": 1},
                           "effect": "not a map", "error": "not a map"}
    assert parse("kind:something_new").matches(odd)
    assert not parse("code:x").matches(odd) and parse("-code:x").matches(odd)
    assert not parse("effect:call").matches(odd)
