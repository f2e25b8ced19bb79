"""A golemd serving HTTP on a free loopback port, and a logged-in session
of it, for the tests of /metrics, the dashboard's API and its pages."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urlsplit

from tests.helpers import EXAMPLES, TEST_AGENTS, DaemonProc, running


def golemctl_dashboard(d: DaemonProc) -> str:
    """The one-time login URL `golemctl dashboard --no-open` prints."""
    out = subprocess.run([sys.executable, "-m", "golemctl", "--socket", d.socket, "dashboard",
                          "--no-open"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith("http://127.0.0.1:") and "/login?token=" in url, url
    return url


def base_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextmanager
def http_daemon(args: tuple[str, ...] = (), apps: tuple[str, ...] = (EXAMPLES, TEST_AGENTS),
                config: dict[str, Any] | None = None) -> Iterator[DaemonProc]:
    with running(config=config, args=("--http", "127.0.0.1:0", *args), apps=apps) as d:
        yield d


class Answer:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class Browserless:
    """A cookie-keeping HTTP client of one golemd (stdlib only)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _NoRedirect())
        self.csrf: str | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 10.0) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return Answer(r.status, r.read(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return Answer(e.code, e.read(), dict(e.headers))

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, csrf: bool = True) -> Answer:
        headers = {"X-CSRF-Token": self.csrf} if csrf and self.csrf else {}
        return self.request("POST", path, body if body is not None else {}, headers)

    def op(self, op: str, **fields: Any) -> Any:
        """Run a wire op through /api/OP; its reply (asserts it succeeded)."""
        a = self.post(f"/api/{op}", fields)
        assert a.status == 200, (a.status, a.text)
        doc = a.json()
        assert doc["ok"] is True, doc
        return doc["reply"]


def login(d: DaemonProc) -> Browserless:
    url = golemctl_dashboard(d)
    b = Browserless(base_of(url))
    a = b.get(url[len(b.base):])
    assert a.status == 303 and a.headers.get("Location") == "/", (a.status, a.headers)
    b.csrf = b.get("/api/session").json()["csrf"]
    return b


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the test looks at the 303 itself
