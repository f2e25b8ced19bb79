"""golemctl's text view of the oplog (golemctl/render.py oplog_content): each
kind's content on one line, from the structured fields, or the detail alone
from a daemon that sends no others."""

from __future__ import annotations

from typing import Any

import pytest

from golemctl import render

CALL = {"agent": 'Inventory("main")', "method": "reserve", "args": ["hat", 2]}


@pytest.mark.parametrize("entry, text", [
    ({"kind": "enqueued", "args": [5, "x", None]}, '(5, "x", None)'),
    ({"kind": "enqueued", "args": []}, "()"),
    ({"kind": "enqueued", "args": [1], "timeout": 2.5}, "(1) timeout 2.5s"),
    ({"kind": "completed", "result": {"a": [1, b"\x00"]}}, "-> {\"a\": [1, b'\\x00']}"),
    ({"kind": "completed", "result": None}, "-> None"),
    ({"kind": "failed", "error": {"code": "TIMEOUT", "message": "add() ran longer"}}, "TIMEOUT: add() ran longer"),
    ({"kind": "canceled"}, ""),
    ({"kind": "retried", "detail": "attempt 2 after 0.1s: killed by SIGKILL"},
     "attempt 2 after 0.1s: killed by SIGKILL"),
    ({"kind": "effect", "detail": "ignored", "effect": {"seq": 1, "kind": "call", "target": CALL["agent"],
                                                        "request": CALL}},
     '#1 call Inventory("main").reserve("hat", 2)'),
    ({"kind": "effect_done", "effect": {"seq": 1, "kind": "call", "target": CALL["agent"], "request": CALL,
                                        "result": 4}},
     '#1 call Inventory("main").reserve("hat", 2) -> 4'),
    ({"kind": "effect_done", "effect": {"seq": 1, "kind": "call", "target": CALL["agent"], "request": CALL,
                                        "error": {"code": "INVOCATION_FAILED", "message": "no hat"}}},
     '#1 call Inventory("main").reserve("hat", 2) -> error INVOCATION_FAILED: no hat'),
    ({"kind": "effect", "effect": {"seq": 0, "kind": "step", "target": "make", "request": {"fn": "make", "args": []},
                                   "error": {"type": "KeyError", "message": "'x'"}}},
     "#0 step make() -> error KeyError: 'x'"),
    ({"kind": "effect", "effect": {"seq": 3, "kind": "promise", "request": {}, "result": "p-1"}},
     '#3 promise -> "p-1"'),
    ({"kind": "effect", "effect": {"seq": 4, "kind": "wait", "target": "p-1", "request": {"promise": "p-1"},
                                   "waiting": True}},
     "#4 wait promise p-1 (waiting)"),
    ({"kind": "effect", "effect": {"seq": 5, "kind": "complete", "target": "p-1",
                                   "request": {"promise": "p-1", "value": "yes"}, "result": None}},
     '#5 complete promise p-1 with "yes" -> None'),
    # a daemon that sends only the detail
    ({"kind": "effect", "detail": "#1 call X().m() -> 2"}, "#1 call X().m() -> 2"),
    ({"kind": "completed"}, ""),
])
def test_oplog_content(entry: dict[str, Any], text: str):
    assert render.oplog_content(entry) == text


def test_a_sleep_shows_when_it_wakes():
    eff = {"seq": 2, "kind": "sleep", "request": {"seconds": 5.0}, "until": 1_700_000_000.0, "waiting": True}
    text = render.oplog_content({"kind": "effect", "effect": eff})
    assert text == f"#2 sleep 5.0s until {render.local_time(1_700_000_000.0)} (waiting)"


def test_long_values_are_cut_and_omitted_ones_said():
    text = render.oplog_content({"kind": "completed", "result": "x" * 1000})
    assert len(text) == len("-> ") + render.VALUE_CHARS and text.endswith("...")
    assert render.oplog_content({"kind": "enqueued", "omitted": {"args": 70_000}}) == "(args not shown: 68.4 KiB)"
    eff = {"seq": 0, "kind": "step", "target": "f", "omitted": {"request": 70_000, "result": 80_000}}
    assert render.oplog_content({"kind": "effect", "effect": eff}) == \
        "#0 step f() (request not shown: 68.4 KiB) (result not shown: 78.1 KiB)"


def test_one_line_per_entry():
    text = render.oplog([{"index": 1, "ts": 1.0, "kind": "failed", "idempotency_key": "k", "method": "m",
                          "error": {"code": "INVOCATION_FAILED", "message": "ValueError: a\nb"}}])
    header, line = text.splitlines()
    assert header.split() == ["#", "TIME", "KIND", "METHOD", "IDEMPOTENCY", "KEY", "DETAIL"]
    assert line.endswith("INVOCATION_FAILED: ValueError: a b")
