"""The README's picture of the dashboard: a golemd with agents in several
statuses, its agents page rendered by Chromium and saved as a PNG.

    .venv/bin/python -m tests.browser.screenshot [--out docs/dashboard.png]

tests/browser/test_agents_page.py runs the same two steps on its own daemon.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from tests.browser.support import ARGS, CHROMIUM, WAIT_MS, missing
from tests.helpers import RawConn, wait_for
from tests.http_helpers import golemctl_dashboard, http_daemon

# (agent, status it is left in)
SHOWN = {
    'CounterAgent("c1")': "Idle", 'CounterAgent("c2")': "Idle", 'dev/CounterAgent("c1")': "Idle",
    'SlowAgent("reports")': "Running", 'SlowAgent("import")': "Interrupted",
    'Checkout("c1")': "Running", 'CounterAgent("nightly")': "Suspended", 'BadInit("db")': "Failed",
    "EchoAgent()": "Idle", 'Stock("main")': "Idle",
}


def populate(conn: RawConn) -> None:
    """Make SHOWN's agents and wait until each is in its status."""
    for _ in range(3):
        conn.ok("invoke", agent='CounterAgent("c1")', method="increment")
    conn.ok("invoke", agent='CounterAgent("c2")', method="add", args=[5])
    conn.ok("invoke", agent='dev/CounterAgent("c1")', method="increment")
    conn.ok("invoke", agent="EchoAgent()", method="echo", args=["hi"])
    for agent, jobs in (('SlowAgent("reports")', ["daily", "weekly", "monthly"]),
                        ('SlowAgent("import")', ["batch-7", "batch-8"])):
        for job in jobs:
            conn.ok("invoke", agent=agent, method="work", args=[600, job], mode="trigger", idempotency_key=job)
    wait_for(lambda: conn.meta('SlowAgent("import")').get("current_invocation"), what="import to start")
    conn.ok("interrupt", agent='SlowAgent("import")')
    conn.ok("invoke", agent='Stock("main")', method="add", args=["hat", 3])
    conn.ok("invoke", agent='Checkout("c1")', method="order", args=["hat"], mode="trigger",
            idempotency_key="order-1")
    conn.ok("invoke", agent='CounterAgent("nightly")', method="increment", mode="trigger",
            schedule_at=time.time() + 6 * 3600, idempotency_key="tonight")
    conn.call("invoke", agent='BadInit("db")', method="hello")
    wait_for(lambda: all(conn.meta(a).get("status") == s for a, s in SHOWN.items()), 20,
             what="the agents to settle")


def capture(browser: Any, login_url: str, out: str) -> None:
    """Log in with `login_url` and save the agents page, once it shows SHOWN's agents."""
    context = browser.new_context(viewport={"width": 1200, "height": 640}, device_scale_factor=1)
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(login_url)
        page.locator("#conn", has_text="live").wait_for()
        page.wait_for_function(f"document.querySelectorAll('#agents tbody tr').length >= {len(SHOWN)}",
                               timeout=WAIT_MS)
        page.mouse.move(0, 0)
        page.screenshot(path=out, full_page=True)
    finally:
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/dashboard.png")
    out = parser.parse_args().out
    why = missing()
    if why is not None:
        print(why, file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    from tests.helpers import EXAMPLES, TEST_AGENTS

    with http_daemon(apps=(EXAMPLES, TEST_AGENTS)) as d, sync_playwright() as p:
        conn = d.conn()
        populate(conn)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            capture(browser, golemctl_dashboard(d), out)
        finally:
            browser.close()
        for agent in SHOWN:  # the 600 s jobs: stopped, not left to the drain timeout
            conn.call("delete", agent=agent)
        conn.close()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
