"""An agent's page (/agent?id=ID): its buttons act as golemctl would, and
what they did shows up live; checked through the Unix socket as well."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from tests.browser.support import need_browser

need_browser()

from playwright.sync_api import expect  # noqa: E402

from tests.helpers import RawConn, wait_for  # noqa: E402


def open_agent(page: Any, base: str, agent_id: str) -> None:
    page.goto(f"{base}/agent?id={quote(agent_id, safe='')}")
    expect(page.locator("#agent-id")).to_have_text(agent_id)
    expect(page.locator("#conn")).to_have_text("live")


def queued(page: Any, key: str) -> Any:
    return page.locator("#queue tbody tr").filter(
        has=page.locator("td.key", has_text=key).filter(has_text=key))


def busy(conn: RawConn, agent: str, key: str = "busy", seconds: float = 30) -> None:
    conn.ok("invoke", agent=agent, method="work", args=[seconds, key], mode="trigger", idempotency_key=key)
    wait_for(lambda: (conn.meta(agent).get("current_invocation") or {}).get("idempotency_key") == key,
             what=f"{key} to start")


def test_cancel_a_queued_invocation_and_too_late_for_the_running_one(
        page: Any, base: str, conn: RawConn) -> None:
    agent = 'SlowAgent("cancel")'
    busy(conn, agent)
    for key in ("q1", "q2"):
        conn.ok("invoke", agent=agent, method="work", args=[0, key], mode="trigger", idempotency_key=key)
    open_agent(page, base, agent)
    rows = page.locator("#queue tbody td.key")
    expect(rows).to_have_text(["busy", "q1", "q2"])
    expect(page.locator("#queue-count")).to_have_text("2 pending")

    page.locator('#queue tbody tr[data-key="q1"] button').click()
    expect(rows).to_have_text(["busy", "q2"])
    expect(page.locator("#queue-count")).to_have_text("1 pending")
    expect(page.locator("#error")).to_be_hidden()

    page.locator('#queue tbody tr[data-key="busy"] button').click()
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("TOO_LATE")
    expect(page.locator("#error")).to_contain_text("already started")
    expect(rows).to_have_text(["busy", "q2"])

    # the seed's outcome, through the socket: q1 is canceled and never runs
    assert conn.err("invoke", agent=agent, method="work", args=[0, "q1"], idempotency_key="q1") == "CANCELED"
    assert conn.ok("cancel", agent=agent, idempotency_key="q1")["canceled"] is True  # again: still so
    history = [(e["kind"], e.get("idempotency_key")) for e in conn.ok("oplog", agent=agent)["entries"]]
    assert ("canceled", "q1") in history
    assert not [kind for kind, key in history if key == "q1" and kind in ("started", "completed", "failed")]
    assert [i["idempotency_key"] for i in conn.ok("invocations", agent=agent)["invocations"]] == ["busy", "q2"]
    expect(page.locator('#oplog tbody tr', has_text="q1").first).to_contain_text("canceled")
    conn.ok("delete", agent=agent)


def test_interrupt_and_resume(page: Any, base: str, conn: RawConn) -> None:
    agent = 'SlowAgent("ir")'
    busy(conn, agent, "long")
    open_agent(page, base, agent)
    status = page.locator("#status .badge")
    started = page.locator("#output .line", has_text="long: working for 30s")
    expect(status).to_have_text("Running")
    expect(started).to_have_count(1)

    page.get_by_role("button", name="Interrupt").click()
    expect(status).to_have_text("Interrupted")
    expect(page.locator('#queue tbody tr[data-key="long"] .badge')).to_have_text("pending")
    expect(page.get_by_role("button", name="Interrupt")).to_be_hidden()
    assert conn.meta(agent)["status"] == "Interrupted"

    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("Running")
    expect(started).to_have_count(2)  # the interrupted invocation runs again
    expect(page.locator('[data-fact="Current invocation"]')).to_have_text("work (long)")
    meta = conn.meta(agent)
    assert meta["status"] == "Running" and meta["current_invocation"]["idempotency_key"] == "long"
    conn.ok("delete", agent=agent)


def test_complete_a_promise(page: Any, base: str, conn: RawConn, tmp_path: Any) -> None:
    agent = 'Shop("approve")'
    ledger = str(tmp_path / "ledger")
    conn.ok("invoke", agent=agent, method="approval", args=[ledger], mode="trigger", idempotency_key="ask")
    wait_for(lambda: conn.meta(agent).get("waiting_for"), what="the wait on the promise")
    promise_id = conn.ok("promise_list", agent=agent)["promises"][0]["promise_id"]
    open_agent(page, base, agent)
    expect(page.locator('[data-fact="Waiting for"]')).to_have_text(f"promise {promise_id}")
    row = page.locator(f'#promises tbody tr[data-key="{promise_id}"]')
    expect(row.locator(".badge")).to_have_text("pending")

    row.locator("input").fill("yes, not JSON")
    row.get_by_role("button", name="Complete").click()
    expect(page.locator("#error")).to_contain_text("Not a JSON value")
    assert not conn.ok("promise_get", promise_id=promise_id)["promise"]["completed"]

    row.locator("input").fill('{"approved": true}')
    row.get_by_role("button", name="Complete").click()
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row).to_contain_text('{"approved":true}')
    expect(page.locator("#error")).to_be_hidden()
    # the waiting invocation went on with the value, and finished
    reply = conn.ok("invoke", agent=agent, method="approval", args=[ledger], idempotency_key="ask")
    assert reply["result"] == {"value": {"approved": True}, "id": promise_id}
    expect(page.locator('[data-fact="Waiting for"]')).to_have_text("—")
    expect(page.locator("#queue-empty")).to_be_visible()


def test_delete_asks_first(page: Any, base: str, conn: RawConn) -> None:
    agent = 'CounterAgent("doomed")'
    conn.ok("invoke", agent=agent, method="increment")
    open_agent(page, base, agent)
    asked: list[str] = []

    def answer(accept: bool) -> Any:
        def on_dialog(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()
        return on_dialog

    page.once("dialog", answer(False))
    page.get_by_role("button", name="Delete…").click()
    wait_for(lambda: asked, what="the confirmation")
    assert agent in asked[0]
    expect(page.locator("#status .badge")).to_have_text("Idle")
    assert conn.meta(agent)["status"] == "Idle"

    page.once("dialog", answer(True))
    page.get_by_role("button", name="Delete…").click()
    expect(page.locator("#gone")).to_be_visible()
    expect(page.locator("#gone")).to_contain_text(f"Deleted {agent}.")
    assert conn.err("get", agent=agent) == "AGENT_NOT_FOUND"
    expect(page.locator("#actions")).to_be_hidden()
    page.get_by_role("link", name="Back to the agents").click()
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.get_by_role("link", name=agent, exact=True)).to_have_count(0)


def test_live_output(page: Any, base: str, conn: RawConn) -> None:
    agent = "Printer()"
    open_agent(page, base, agent)  # before the agent exists: it shows up, and its output with it
    expect(page.locator("#gone")).to_be_visible()
    conn.ok("invoke", agent=agent, method="say", args=["hello", 2])
    lines = page.locator("#output .line .text")
    expect(lines).to_have_text(["hello 0", "hello 1"])
    expect(page.locator("#gone")).to_be_hidden()
    conn.ok("invoke", agent=agent, method="say", args=["<script>alert(1)</script><b>x</b>"])
    expect(lines).to_have_text(["hello 0", "hello 1", "<script>alert(1)</script><b>x</b> 0"])
    assert page.locator("#output script, #output b").count() == 0


def test_a_bad_agent_id(page: Any, base: str) -> None:
    page.goto(f"{base}/agent?id={quote('not an id', safe='')}")
    expect(page.locator(".error")).to_contain_text("INVALID_AGENT_ID")
    page.goto(f"{base}/agent?id={quote(chr(39).join(['CounterAgent(', 'c1', ')']), safe='')}")
    expect(page.locator("#agent-id")).to_have_text('CounterAgent("c1")')  # one URL per agent
    assert parse_qs(urlsplit(page.url).query) == {"id": ['CounterAgent("c1")']}


def test_simulate_crash(page: Any, base: str, conn: RawConn) -> None:
    agent = 'CounterAgent("crash")'
    conn.ok("invoke", agent=agent, method="add", args=[7])
    old = conn.meta(agent)["pid"]
    open_agent(page, base, agent)
    process = page.locator('[data-fact="Process"]')
    expect(process).to_have_text(f"pid {old}")
    page.get_by_role("button", name="Simulate crash").click()
    expect(process).not_to_have_text(f"pid {old}")
    expect(process).to_have_text(f"pid {conn.meta(agent)['pid']}")
    expect(page.locator("#status .badge")).to_have_text("Idle")
    assert conn.ok("invoke", agent=agent, method="get")["result"] == 7  # its state survived
    expect(page.locator("#oplog")).to_contain_text("simulated crash")
