"""The dashboard's pages: server-rendered HTML shells whose script fills
them from the live views (golemd.http.live) and acts through the API
(golemd.http.api)."""

from __future__ import annotations

import html

from aiohttp import web

UNAUTHORIZED = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>golemd: log in</title><style>body{font:16px/1.5 system-ui,sans-serif;margin:4rem auto;
max-width:36rem;color:#1f2328}code{background:#f0f2f4;padding:.1rem .35rem;border-radius:4px}</style>
</head><body><h1>golemd</h1><p>%s</p><p>To log in, run <code>golemctl dashboard</code> on the
machine golemd runs on: it prints a one-time link.</p></body></html>"""


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)


def unauthorized(request: web.Request, why: str = "You are not logged in.") -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"ok": False, "error": {
            "code": "UNAUTHORIZED", "message": "not logged in: run `golemctl dashboard`"}}, status=401)
    return web.Response(text=UNAUTHORIZED % html.escape(why), content_type="text/html", status=401)


async def index(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><title>golemd</title><h1>golemd</h1>",
                        content_type="text/html")
