"""`golemctl dashboard`: log in to the web dashboard. The daemon hands out a
one-time URL over the Unix socket, so whoever may use the socket may log in,
and nobody else (docs/operations.md, "Dashboard")."""

from __future__ import annotations

import click

from golemctl.command import Settings, global_options
from golemctl.helpers import connect as _connect
from golemctl.helpers import show as _show


@click.command("dashboard", short_help="Open the web dashboard (a one-time login URL).")
@click.option("--no-open", is_flag=True, help="Only print the URL; do not start a browser.")
@global_options
@click.pass_obj
def dashboard_cmd(s: Settings, no_open: bool) -> None:
    """Print a one-time login URL of the dashboard and open it in a browser
    when one is available. The URL logs one browser in, once, within two
    minutes; run this again for another. golemd must run with --http
    (`make run` does: 127.0.0.1:7070)."""
    with _connect(s) as c:
        reply = c.dashboard()
    url = reply["url"]
    _show(s, reply, lambda: url)
    if not no_open and not s.json:
        _open(url)


def _open(url: str) -> None:
    """A browser if this session has one (a desktop, $BROWSER); else nothing:
    the URL is printed already."""
    import os
    import sys

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")
            or sys.platform == "darwin"):
        return
    import webbrowser

    try:
        opened = webbrowser.open(url)
    except Exception:  # a broken browser setup must not turn a printed URL into a failure
        opened = False
    if not opened:
        click.echo("(no browser could be started: open the URL above)", err=True)
