"""What the browser tests need: Playwright for Python and Debian's Chromium
(/usr/bin/chromium; no browser is downloaded at test time). Without them the
browser test modules are skipped, saying what to install, except under CI
(env CI set), where a missing browser is a failure, not a silent skip."""

from __future__ import annotations

import importlib.util
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
WAIT_MS = 10_000  # every expect's deadline: a loaded 2-core machine, not a slow page


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: apt-get install chromium (and pip install playwright)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is missing: pip install playwright (and apt-get install chromium)"
    return None


def need_browser(module: bool = True) -> None:
    """Skip (or under CI fail) without a browser: at the top of a browser test
    module, before it imports playwright, or in a fixture (module=False)."""
    why = missing()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run under CI: {why}", pytrace=False)
    pytest.skip(f"browser tests skipped: {why}", allow_module_level=module)
