"""The dashboard's pages: server-rendered HTML shells (golemd/http/templates)
whose scripts (golemd/http/static) fill them from the live views
(golemd.http.live) and act through the API (golemd.http.api).

Every value this module puts into a page is escaped here, and the scripts
build the DOM with textContent only. The Content-Security-Policy allows
scripts and styles from this origin alone, so a slip in either still runs
no injected script.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path
from string import Template
from urllib.parse import quote

from aiohttp import web

from golemd.http.api import call_op
from golemd.model.agent_id import parse_agent_id
from golemd.model.errors import GolemError
from golemd.model.states import AgentStatus

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


LAYOUT = _template("layout.html")
AGENTS = _template("agents.html")
AGENT = _template("agent.html")
UNAUTHORIZED = _template("unauthorized.html")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _style_hash(page: Template) -> str:
    """The CSP source of a page's one inline <style>: the 401 page cannot load
    /static (it is behind the login) and needs no script at all."""
    css = re.search(r"<style>(.*?)</style>", page.template, re.S)
    assert css is not None
    return "'sha256-" + base64.b64encode(hashlib.sha256(css.group(1).encode()).digest()).decode() + "'"


UNAUTHORIZED_CSP = f"default-src 'none'; style-src {_style_hash(UNAUTHORIZED)}; frame-ancestors 'none'"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", agents_page)
    app.router.add_get("/agent", agent_page)
    app.router.add_static("/static", STATIC, follow_symlinks=False, show_index=False)
    app.on_response_prepare.append(security_headers)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, JSON and events too: they cost nothing there."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"  # the login URL carries a token
    if request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-cache"  # an upgraded golemd's scripts, not the cached ones
    else:
        headers.setdefault("Cache-Control", "no-store")


def unauthorized(request: web.Request, why: str = "You are not logged in.") -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"ok": False, "error": {
            "code": "UNAUTHORIZED", "message": "not logged in: run `golemctl dashboard`"}}, status=401)
    return web.Response(text=UNAUTHORIZED.substitute(why=html.escape(why)), content_type="text/html",
                        status=401, headers={"Content-Security-Policy": UNAUTHORIZED_CSP})


def page(title: str, script: str, main: str, data: dict[str, str] | None = None,
         status: int = 200) -> web.Response:
    """A page of the layout; `main` is HTML already escaped, `data` becomes data-* attributes."""
    attrs = " ".join(f'data-{name}="{html.escape(value)}"' for name, value in (data or {}).items())
    text = LAYOUT.substitute(title=html.escape(title), script=script, main=main, data=attrs)
    return web.Response(text=text, content_type="text/html", status=status)


def options(values: list[str], chosen: str, blank: str) -> str:
    """<option>s of a <select>: `blank` first (no filter), then `values`."""
    if chosen and chosen not in values:
        values = [*values, chosen]  # typed into the URL by hand: keep it visible
    out = [f'<option value=""{" selected" if not chosen else ""}>{html.escape(blank)}</option>']
    out += [f'<option value="{html.escape(v)}"{" selected" if v == chosen else ""}>{html.escape(v)}</option>'
            for v in values]
    return "".join(out)


async def agents_page(request: web.Request) -> web.Response:
    q = request.query
    try:
        types = [t["name"] for t in (await call_op(request.app["http"].daemon, "types", {}))["types"]]
    except GolemError:
        types = []
    limit = q.get("limit", "")
    limit_input = (f'<input type="hidden" name="limit" value="{html.escape(limit)}">' if limit else "")
    main = AGENTS.substitute(
        type_options=options(types, q.get("type", ""), "any type"),
        status_options=options([s.value for s in AgentStatus], q.get("status", ""), "any status"),
        env=html.escape(q.get("env", "")), limit_input=limit_input)
    return page("Agents", "agents.js", main)


async def agent_page(request: web.Request) -> web.Response:
    given = request.query.get("id", "")
    if not given:
        raise web.HTTPSeeOther("/")
    try:
        canonical = parse_agent_id(given).canonical
    except GolemError as err:
        main = (f'<p class="crumbs"><a href="/">Agents</a> /</p><h1>{html.escape(given)}</h1>'
                f'<p class="error">{html.escape(str(err.to_wire()["code"]))}: {html.escape(err.message)}</p>')
        return page("Bad agent ID", "common.js", main, status=400)
    if canonical != given:  # one URL per agent, whatever spelling was typed
        raise web.HTTPSeeOther("/agent?id=" + quote(canonical, safe=""))
    return page(canonical, "agent.js", AGENT.substitute(agent_id=html.escape(canonical)),
                {"agent": canonical})
