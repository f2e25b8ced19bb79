"""Fixtures of the browser tests: one Chromium for them all, one golemd
per module (tests/http_helpers.http_daemon), and a fresh logged-in page per
test (its own browser context, so its own cookie), logged in with the URL
the real `golemctl dashboard` printed. A page that logs a script error or a
refused resource (a CSP violation) fails its test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import ARGS, CHROMIUM, WAIT_MS, need_browser
from tests.helpers import DURABLE_AGENTS, EXAMPLES, TEST_AGENTS, DaemonProc
from tests.http_helpers import base_of, golemctl_dashboard, http_daemon


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium for every browser test. Package-scoped, not session: while
    Playwright's sync API is open it keeps an event loop running in this
    thread, and every later test's asyncio.run() would refuse to start."""
    need_browser(module=False)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProc]:
    """One golemd with HTTP per module (tests/conftest.py's `conn` connects to it)."""
    with http_daemon(apps=(EXAMPLES, TEST_AGENTS, DURABLE_AGENTS)) as d:
        yield d


class Problems:
    """What the page complained about: script errors and console errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def console(self, msg: Any) -> None:
        # a refused fetch (TOO_LATE is a 409) is the page working; anything else is not
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.errors.append(msg.text)


def open_page(browser: Any, problems: Problems) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("console", problems.console)
    page.on("pageerror", lambda exc: problems.errors.append(f"page error: {exc}"))
    return page


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def page(browser: Any, daemon: DaemonProc, problems: Problems) -> Iterator[Any]:
    """A page logged in to `daemon`, on the agents page."""
    p = open_page(browser, problems)
    url = golemctl_dashboard(daemon)
    p.goto(url)
    assert p.url == base_of(url) + "/", p.url
    yield p
    p.context.close()
    assert not problems.errors, problems.errors


@pytest.fixture
def base(page: Any) -> str:
    return base_of(page.url)
