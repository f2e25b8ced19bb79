"""The HTTP side's gate and limits, without a browser: sessions that end,
tokens used once, CSRF and Origin on every POST, the op table, and the
limits that keep a slow or hostile HTTP client from costing the
invocations anything (connection count, request-head and body deadlines,
body size)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.helpers import DaemonProc, running, wait_for
from tests.http_helpers import Browserless, base_of, golemctl_dashboard, http_daemon, login


@pytest.fixture(scope="module")
def hd() -> Iterator[DaemonProc]:
    config = {"http_session_seconds": 2.0, "http_request_timeout": 1.0}
    with http_daemon(config=config) as d:
        yield d


def test_a_token_logs_in_once(hd: DaemonProc) -> None:
    url = golemctl_dashboard(hd)
    b = Browserless(base_of(url))
    assert b.get(url[len(b.base):]).status == 303
    other = Browserless(b.base)
    again = other.get(url[len(b.base):])
    assert again.status == 401 and "golemctl dashboard" in again.text
    assert other.get("/").status == 401
    assert Browserless(b.base).get("/login?token=forged").status == 401


def test_a_session_expires(hd: DaemonProc) -> None:
    b = login(hd)
    assert b.get("/api/session").status == 200
    wait_for(lambda: b.get("/api/session").status == 401, timeout=10, interval=0.2,
             what="the 2-second session to expire")
    assert b.post("/api/status").status == 401


def test_logout_ends_the_session(hd: DaemonProc) -> None:
    b = login(hd)
    assert b.post("/logout").status == 200
    assert b.get("/").status == 401


def test_posts_need_the_csrf_token_and_this_origin(hd: DaemonProc) -> None:
    b = login(hd)
    c = hd.conn()
    c.ok("invoke", agent='SlowAgent("g")', method="work", args=[30, "busy"], mode="trigger", idempotency_key="busy")
    wait_for(lambda: c.meta('SlowAgent("g")').get("current_invocation"), what="busy to start")
    c.ok("invoke", agent='SlowAgent("g")', method="work", args=[0.1, "q"], mode="trigger", idempotency_key="q")
    cancel = {"agent": 'SlowAgent("g")', "idempotency_key": "q"}
    assert b.post("/api/cancel", cancel, csrf=False).status == 403
    assert b.request("POST", "/api/cancel", cancel, {"X-CSRF-Token": "wrong"}).status == 403
    foreign = b.request("POST", "/api/cancel", cancel, {"X-CSRF-Token": b.csrf or "",
                                                          "Origin": "http://evil.example"})
    assert foreign.status == 403
    assert c.meta('SlowAgent("g")')["pending_invocation_count"] == 1  # nothing changed
    assert b.op("cancel", **cancel) == {"idempotency_key": "q", "canceled": True}
    assert c.meta('SlowAgent("g")')["pending_invocation_count"] == 0
    c.ok("interrupt", agent='SlowAgent("g")')
    c.close()


def test_errors_keep_their_codes(hd: DaemonProc) -> None:
    b = login(hd)
    a = b.post("/api/get", {"agent": 'CounterAgent("nobody")'})
    assert a.status == 404 and a.json()["error"]["code"] == "AGENT_NOT_FOUND"
    a = b.post("/api/get", {"agent": "not an id"})
    assert a.status == 400 and a.json()["error"]["code"] == "INVALID_AGENT_ID"
    a = b.post("/api/get", {"agent": 'CounterAgent("x")', "bogus": 1})
    assert a.status == 400 and a.json()["error"]["code"] == "BAD_REQUEST"
    for op in ("stop", "reload", "invoke", "new", "nope"):
        a = b.post(f"/api/{op}", {})
        assert a.status == 400 and "does not offer" in a.json()["error"]["message"], op
    a = b.request("POST", "/api/status", None, {"X-CSRF-Token": b.csrf or "", "Content-Type": "application/json"})
    assert a.status == 400
    assert b.op("status")["agents"] >= 0


def test_a_body_over_the_limit_is_refused(hd: DaemonProc) -> None:
    b = login(hd)
    a = b.post("/api/promise_complete", {"promise_id": "p", "value": "x" * (2 << 20)})
    assert a.status == 413
    assert b.op("status")["pid"] > 0  # and the daemon is fine


def test_slow_clients_are_cut_off_and_invocations_go_on() -> None:
    # A daemon of its own: the module's holds connections of the other tests
    # (a refused body lingers), which would take slots of the budget.
    with http_daemon(config={"http_request_timeout": 3.0, "http_max_connections": 8}) as hd:
        host, port = base_of(golemctl_dashboard(hd))[len("http://"):].split(":")
        slow = []
        for _ in range(8):  # the whole connection budget, each sending half a request head
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        # one more is over the limit: closed at once
        extra = socket.create_connection((host, int(port)), timeout=5)
        assert extra.recv(1) == b""
        extra.close()
        c = hd.conn()
        assert c.ok("invoke", agent='CounterAgent("slow-http")', method="increment")["result"] == 1
        # answered while every slow client still held its connection: not held up by them
        for s in slow:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
            s.setblocking(True)
        for s in slow:  # each is closed by the daemon after http_request_timeout (3 s)
            s.settimeout(10)
            assert s.recv(1024) == b""
            s.close()
        c.close()
        b = login(hd)  # and the budget is back
        assert b.get("/metrics").status == 200


def test_a_non_loopback_address_needs_http_allow_remote(tmp_path) -> None:
    from golemd.config import load_config

    with pytest.raises(ValueError, match="http_allow_remote"):
        load_config(None, {"http": "0.0.0.0:7070", "state_dir": str(tmp_path)})
    assert load_config(None, {"http": "0.0.0.0:7070", "http_allow_remote": True,
                              "state_dir": str(tmp_path)}).http == "0.0.0.0:7070"
    for ok in ("127.0.0.1:7070", "[::1]:7070", "localhost:7070"):
        assert load_config(None, {"http": ok, "state_dir": str(tmp_path)}).http == ok
    with pytest.raises(ValueError, match="ADDR:PORT"):
        load_config(None, {"http": "7070", "state_dir": str(tmp_path)})


def test_a_taken_port_is_a_clear_start_up_error() -> None:
    import os
    import shutil

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    d = DaemonProc(args=("--http", f"127.0.0.1:{port}"))
    try:
        with pytest.raises(AssertionError, match="golemd exited with 1"):
            d.start()
        assert f"cannot serve HTTP on 127.0.0.1:{port}" in d.log()
        assert not os.path.exists(d.socket)  # it failed before binding its socket
    finally:
        taken.close()
        shutil.rmtree(d.base, ignore_errors=True)


def test_json_logs_are_one_object_per_line() -> None:
    with running(args=("--log-format", "json")) as d:
        c = d.conn()
        c.ok("invoke", agent='CounterAgent("log")', method="increment")
        c.close()
        lines = [line for line in d.log().splitlines() if line.startswith("{")]
        assert lines
        for line in lines:
            obj = json.loads(line)
            assert {"ts", "level", "logger", "message"} <= set(obj), obj
        assert any("listening on" in json.loads(line)["message"] for line in lines)
