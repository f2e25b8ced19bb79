"""Nothing but /metrics answers without the login: every route the app
has (enumerated from HttpServer.make_app, not listed by hand) is a 401, the
401 page says how to log in, a login link works once, and a POST without
the session's CSRF token, with a wrong one, or from another origin is a 403
that changes nothing, also when another local page makes the browser send it.
The tests without a browser run without one too."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from golemd.config import Config
from golemd.http import api
from golemd.http.pages import STATIC
from golemd.http.server import OPEN, HttpServer
from tests.browser.conftest import Problems, open_page
from tests.helpers import DaemonProc, RawConn
from tests.http_helpers import Browserless, base_of, golemctl_dashboard, login

try:
    from playwright.sync_api import expect
except ImportError:  # the tests that use it take the browser fixture, which skips first
    expect = None  # type: ignore[assignment]

VICTIM = 'CounterAgent("victim")'


def routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the app, the dynamic ones filled in."""
    server = HttpServer(SimpleNamespace(config=Config(http="127.0.0.1:0")), metrics=None)  # type: ignore[arg-type]
    found = []
    for route in server.make_app().router.routes():
        resource = route.resource
        assert resource is not None
        if isinstance(resource, web.StaticResource):
            paths = [f"{resource.canonical}/{f.name}" for f in STATIC.iterdir()]
        elif resource.canonical == "/api/{op}":
            paths = [f"/api/{op}" for op in sorted(api.OPS | {"stop", "invoke", "bogus"})]
        else:
            assert "{" not in resource.canonical, f"fill in {resource.canonical} here"
            paths = [resource.canonical]
        found += [(route.method, p) for p in paths]
    return found


ROUTES = routes()


def test_the_enumeration_sees_every_kind_of_route() -> None:
    paths = {p for _, p in ROUTES}
    assert {"/", "/agent", "/api/session", "/api/live/agents", "/api/live/agent", "/api/cancel",
            "/static/agents.js", "/static/style.css", "/logout", "/metrics", "/login"} <= paths
    assert {m for m, _ in ROUTES} == {"GET", "HEAD", "POST"}


@pytest.fixture(scope="module")
def anonymous(daemon: DaemonProc) -> Browserless:
    return Browserless(base_of(golemctl_dashboard(daemon)))


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[1] not in OPEN] + [
    ("GET", "/no/such/page"), ("POST", "/no/such/page"), ("GET", "/static/../pages.py")])
def test_every_route_needs_the_login(anonymous: Browserless, method: str, path: str) -> None:
    for cookie in (None, "golemd_session=forged"):
        a = anonymous.request(method, path, body={} if method == "POST" else None,
                              headers={"Cookie": cookie} if cookie else {})
        assert a.status == 401, (method, path, a.status, a.body[:200])
        if method == "HEAD":
            continue
        if path.startswith("/api/"):
            assert a.json()["error"]["code"] == "UNAUTHORIZED"
            assert "golemctl dashboard" in a.json()["error"]["message"]
        else:
            assert "golemctl dashboard" in a.text


def test_open_routes(anonymous: Browserless) -> None:
    assert anonymous.get("/metrics").status == 200
    a = anonymous.get("/login?token=forged")
    assert a.status == 401 and "used up or expired" in a.text and "golemctl dashboard" in a.text


def test_the_401_page(browser: Any, daemon: DaemonProc, problems: Problems) -> None:
    page = open_page(browser, problems)
    try:
        base = base_of(golemctl_dashboard(daemon))
        answer = page.goto(base + "/")
        assert answer is not None and answer.status == 401
        expect(page.locator("body")).to_contain_text("To log in, run golemctl dashboard")
        expect(page.locator("code")).to_have_text("golemctl dashboard")
        # its inline style is allowed by the CSP's hash: it is styled, and nothing was refused
        assert page.evaluate("getComputedStyle(document.querySelector('code')).borderRadius") == "4px"
    finally:
        page.context.close()
    assert not problems.errors, problems.errors


def test_a_login_link_works_once(browser: Any, daemon: DaemonProc, problems: Problems) -> None:
    url = golemctl_dashboard(daemon)
    first, second = open_page(browser, problems), open_page(browser, problems)
    try:
        first.goto(url)
        expect(first.locator("h1")).to_have_text("Agents")
        answer = second.goto(url)
        assert answer is not None and answer.status == 401
        expect(second.locator("body")).to_contain_text("This login link is used up or expired.")
        expect(second.locator("body")).to_contain_text("golemctl dashboard")
        assert second.goto(base_of(url) + "/").status == 401  # type: ignore[union-attr]
        assert second.context.cookies() == []
        cookie = first.context.cookies()[0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert first.evaluate("document.cookie") == ""  # page scripts cannot read it
    finally:
        first.context.close()
        second.context.close()
    assert not problems.errors, problems.errors


@pytest.fixture
def victim(conn: RawConn) -> Iterator[RawConn]:
    conn.ok("invoke", agent=VICTIM, method="add", args=[3])
    yield conn


def intact(conn: RawConn) -> None:
    meta = conn.meta(VICTIM)
    assert meta["status"] == "Idle" and meta["completed_count"] >= 1, meta


def test_forged_posts_are_refused(daemon: DaemonProc, victim: RawConn) -> None:
    b = login(daemon)
    port = int(b.base.rsplit(":", 1)[1])
    forged: list[dict[str, str]] = [
        {},  # no token
        {"X-CSRF-Token": "wrong"},
        {"X-CSRF-Token": (b.csrf or "") + "x"},
        {"X-CSRF-Token": b.csrf or "", "Origin": "http://evil.example"},
        {"X-CSRF-Token": b.csrf or "", "Origin": f"http://127.0.0.1:{port + 1}"},  # another port here
        {"X-CSRF-Token": b.csrf or "", "Origin": "null"},
    ]
    for headers in forged:
        for op, body in (("delete", {"agent": VICTIM}), ("interrupt", {"agent": VICTIM})):
            a = b.request("POST", f"/api/{op}", body, headers=headers)
            assert a.status == 403, (headers, a.status, a.text)
            assert "CSRF" in a.json()["error"]["message"]
        assert b.request("POST", "/logout", {}, headers=headers).status == 403
        intact(victim)
    assert b.get("/api/session").status == 200  # the session outlived the forged logout
    # the same request with the token, from this origin: it was the token that was missing
    assert b.op("interrupt", agent=VICTIM)["agent"]["status"] == "Interrupted"
    assert b.op("resume", agent=VICTIM)["agent"]["status"] == "Idle"


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another local web page (another port of 127.0.0.1: the same site, so a
    SameSite=Strict cookie goes along) that posts to the dashboard."""

    page = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: Any) -> None:
        pass


def test_another_local_page_cannot_act(page: Any, base: str, victim: RawConn, problems: Problems) -> None:
    # a form can POST across origins without a preflight, but cannot add a header
    _Attacker.page = f"""<!doctype html><form method="post" action="{base}/api/delete" enctype="text/plain">
        <input name='{{"agent": "CounterAgent(\\"victim\\")", "x": "' value='"}}'></form>
        <button id="go" onclick="document.forms[0].submit()">go</button>""".encode()
    server = http.server.HTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        attacker = f"http://127.0.0.1:{server.server_address[1]}/"
        page.goto(attacker)
        # its script cannot read the session's CSRF token (no CORS), though the cookie goes along
        read = page.evaluate(f"""fetch("{base}/api/session", {{credentials: "include"}})
            .then(r => r.text()).then(() => "read", () => "blocked")""")
        assert read == "blocked"
        assert [e for e in problems.errors if "blocked by CORS policy" in e], problems.errors
        problems.errors = [e for e in problems.errors if "blocked by CORS policy" not in e]  # as it should
        with page.expect_navigation():
            page.locator("#go").click()
        expect(page.locator("body")).to_contain_text("CSRF")
        intact(victim)
    finally:
        server.shutdown()
        server.server_close()


def test_security_headers(daemon: DaemonProc) -> None:
    b = login(daemon)
    for path in ("/", "/agent?id=CounterAgent(%22h%22)", "/static/agents.js", "/api/session"):
        a = b.get(path)
        assert a.status == 200, (path, a.status)
        csp = a.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp, csp
        assert a.headers["X-Content-Type-Options"] == "nosniff"
        assert a.headers["X-Frame-Options"] == "DENY"
        if path.startswith("/static/"):
            assert a.headers["Content-Type"].startswith(("text/javascript", "application/javascript"))
        elif not path.startswith("/api/"):
            assert "<script>" not in a.text and "<script type=\"module\" src=\"/static/" in a.text
            assert not re.search(r"<[^>]*\son[a-z]+\s*=", a.text), path  # no inline handlers
    assert b.get("/static/").status in (403, 404)  # no index of the files
    for path in ("/static/../pages.py", "/static/%2e%2e/pages.py", "/static/../templates/agent.html"):
        a = b.get(path)
        assert a.status in (403, 404) and b"add_routes" not in a.body and b"$agent_id" not in a.body, path


def test_the_csp_stops_an_injected_script(page: Any, problems: Problems) -> None:
    page.evaluate("""() => { const s = document.createElement("script");
        s.textContent = "window.injected = true"; document.body.append(s); }""")
    assert page.evaluate("window.injected") is None
    refused = [e for e in problems.errors if "Content Security Policy" in e]
    assert refused, problems.errors
    problems.errors = [e for e in problems.errors if e not in refused]


def test_limits(daemon: DaemonProc) -> None:
    b = login(daemon)
    a = b.request("POST", "/api/status", {"x": "a" * (1 << 20)}, headers={"X-CSRF-Token": b.csrf or ""})
    assert a.status == 413 and a.json()["error"]["code"] == "TOO_LARGE", (a.status, a.text)
    assert b.request("GET", "/api/session", headers={"X-Big": "a" * 9000}).status == 400
    assert b.op("status")["agents"] >= 0  # and it goes on
    assert "Traceback" not in daemon.log()


def test_log_out_ends_the_live_streams(browser: Any, daemon: DaemonProc, problems: Problems) -> None:
    url = golemctl_dashboard(daemon)
    page = open_page(browser, problems)
    try:
        page.goto(url)
        other = page.context.new_page()  # a second tab of the same session
        other.goto(base_of(url) + "/agent?id=EchoAgent()")
        expect(other.locator("#conn")).to_have_text("live")
        expect(page.locator("#conn")).to_have_text("live")
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("body")).to_contain_text("You are not logged in.")
        # the other tab's stream ends with the session, and says so
        expect(other.locator("#conn")).to_have_text("logged out")
        expect(other.locator("#error")).to_contain_text("golemctl dashboard")
        assert page.context.cookies() == []
        assert page.goto(base_of(url) + "/api/session").status == 401  # type: ignore[union-attr]
    finally:
        page.context.close()
    assert not problems.errors, problems.errors
