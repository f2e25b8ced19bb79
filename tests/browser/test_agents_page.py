"""The agents page (/): live rows and counts, filters and pages, IDs as text."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.browser.support import need_browser

need_browser()

from playwright.sync_api import expect  # noqa: E402

from tests.helpers import DaemonProc, RawConn, wait_for  # noqa: E402


def row(page: Any, agent_id: str) -> Any:
    return page.locator("#agents tbody tr").filter(
        has=page.get_by_role("link", name=agent_id, exact=True))


def test_an_invoked_agent_appears_without_a_reload(page: Any, conn: RawConn) -> None:
    expect(page.locator("#conn")).to_have_text("live")
    expect(row(page, 'CounterAgent("appear")')).to_have_count(0)
    page.evaluate("window.stillHere = true")  # gone if the page reloaded
    conn.ok("invoke", agent='CounterAgent("appear")', method="increment")
    r = row(page, 'CounterAgent("appear")')
    expect(r).to_have_count(1)
    expect(r.locator(".badge")).to_have_text("Idle")
    expect(r.locator("td").nth(1)).to_have_text("CounterAgent")
    expect(r.locator("td").nth(2)).to_have_text("default")
    assert page.evaluate("window.stillHere") is True
    total = conn.ok("status")["agents"]
    expect(page.locator('#counts a[data-status="All agents"] .n')).to_have_text(str(total))


def test_the_pending_count_moves_live(page: Any, conn: RawConn) -> None:
    agent = 'SlowAgent("pc")'
    page.goto(page.url + "?type=SlowAgent")
    conn.ok("invoke", agent=agent, method="work", args=[30, "busy"], mode="trigger", idempotency_key="busy")
    r = row(page, agent)
    expect(r.locator(".badge")).to_have_text("Running")
    expect(r.locator("td.current")).to_contain_text("work busy")
    expect(r.locator("td.pending")).to_have_text("0")
    for n in (1, 2, 3):
        conn.ok("invoke", agent=agent, method="work", args=[0, f"q{n}"], mode="trigger")
        expect(r.locator("td.pending")).to_have_text(str(n))
    conn.ok("delete", agent=agent)
    expect(r).to_have_count(0)


def test_filters_and_pages(page: Any, conn: RawConn) -> None:
    names = [f'pages/CounterAgent("p{i}")' for i in range(5)]
    for name in names:
        conn.ok("invoke", agent=name, method="increment")
    page.goto(page.url + "?env=pages&limit=2")
    shown = page.locator("#agents tbody td.id")
    prev, next_ = page.locator("#prev"), page.locator("#next")
    expect(shown).to_have_text(names[:2])
    expect(prev).to_have_class("disabled")
    for start in (2, 4):
        next_.click()
        expect(shown).to_have_text(names[start:start + 2])
        assert parse_qs(urlsplit(page.url).query)["after"] == [names[start - 1]]
    expect(next_).to_have_class("disabled")
    for start in (2, 0):
        prev.click()
        expect(shown).to_have_text(names[start:start + 2])
    expect(prev).to_have_class("disabled")

    # the form keeps its filters in the query string
    page.locator('select[name="status"]').select_option("Failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#empty")).to_be_visible()
    assert parse_qs(urlsplit(page.url).query) == {"env": ["pages"], "status": ["Failed"], "limit": ["2"]}
    expect(page.locator('select[name="status"]')).to_have_value("Failed")
    expect(page.locator('input[name="env"]')).to_have_value("pages")
    types = page.locator('select[name="type"] option').all_inner_texts()
    assert {"any type", "CounterAgent", "SlowAgent", "Shop"} <= set(types), types
    # a status count is a link to that status
    page.locator('#counts a[data-status="Idle"]').click()
    expect(shown).to_have_text(names[:2])
    assert parse_qs(urlsplit(page.url).query)["status"] == ["Idle"]


def test_agent_ids_are_shown_as_text(page: Any, conn: RawConn) -> None:
    hostile = 'xss/CounterAgent("<img src=x onerror=alert(1)></td><b>b")'
    conn.ok("invoke", agent=hostile, method="increment", idempotency_key="<i>k</i>")
    canonical = conn.meta(hostile)["agent_id"]
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:  # an alert() that ran
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(page.url + "?env=xss")
    link = page.get_by_role("link", name=canonical, exact=True)
    expect(link).to_have_count(1)
    assert page.locator("#agents img, #agents b").count() == 0
    link.click()
    expect(page.locator("#agent-id")).to_have_text(canonical)
    expect(page.locator("#oplog")).to_contain_text("<i>k</i>")
    assert page.locator("main img, main b, main i").count() == 0
    wait_for(lambda: "id=" in page.url, what="the agent page")
    assert not dialogs


def test_the_screenshot(browser: Any, daemon: DaemonProc, conn: RawConn, tmp_path: Any) -> None:
    """python -m tests.browser.screenshot's steps, on this module's daemon."""
    from tests.browser.screenshot import SHOWN, capture, populate
    from tests.http_helpers import golemctl_dashboard

    populate(conn)
    out = tmp_path / "dashboard.png"
    capture(browser, golemctl_dashboard(daemon), str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    by_status = conn.ok("status")["agents_by_status"]
    assert {s for s in SHOWN.values()} <= {s for s, n in by_status.items() if n}
    for agent in SHOWN:
        conn.ok("delete", agent=agent)
