"""The HTTP server in the daemon's own event loop (aiohttp): the routes,
the login gate, and the limits that keep a slow or hostile client from
costing the invocations anything.

- At most http_max_connections connections; one more is closed at once.
- A connection must send a whole request head within http_request_timeout of
  opening (or of its previous answer), and a body within as long again;
  bodies are at most MAX_BODY bytes, heads aiohttp's 8 KiB lines and 128 fields.
- Idle keep-alive connections close after KEEPALIVE.
Every route but /metrics and /login needs a session (golemd.http.auth).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from golemd.config import is_loopback, parse_http_address
from golemd.http import api, live, pages
from golemd.http.auth import COOKIE, Logins, Session, csrf_ok
from golemd.http.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from golemd.server.context import ServerContext

log = logging.getLogger("golemd.http")

KEEPALIVE = 15.0
MAX_BODY = 1024 * 1024
SESSION_KEY: web.AppKey[Session] = web.AppKey("session", Session)
OPEN = frozenset({"/metrics", "/login"})


class HttpServer:
    def __init__(self, daemon: ServerContext, metrics: Metrics) -> None:
        self.daemon = daemon
        self.metrics = metrics
        config = daemon.config
        assert config.http is not None
        self.host, self.port = parse_http_address(config.http)
        self.max_connections = config.http_max_connections
        self.request_timeout = config.http_request_timeout
        self.logins = Logins(config.http_session_seconds)
        self.stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        # connection (aiohttp's RequestHandler, which takes no weak reference) -> requests
        # it has begun; an entry goes with its connection
        self._requests: dict[Any, int] = {}
        self._live: set[Any] = set()  # connections accepted and not lost

    # -- life ---------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """Every route, behind the gate (the tests enumerate them from here)."""
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._gate])
        app["http"] = self
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/api/session", self._session)
        api.add_routes(app)
        live.add_routes(app)
        pages.add_routes(app)
        return app

    async def start(self) -> None:
        app = self.make_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=REQUESTS,
                                     keepalive_timeout=KEEPALIVE, shutdown_timeout=1.0)
        await self._runner.setup()
        manager = self._runner.server
        assert manager is not None
        lost = manager.connection_lost

        def connection_lost(handler: Any, exc: BaseException | None) -> None:
            self._live.discard(handler)
            self._requests.pop(handler, None)
            lost(handler, exc)

        # Counted from the accept, not from aiohttp's own list: a burst of
        # connections is accepted before any of them registers there.
        manager.connection_lost = connection_lost  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, self.host, self.port, backlog=128,
                                                reuse_address=True)
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]  # the one bound when the config said port 0 (tests)
        log.info("dashboard and /metrics on %s (log in: golemctl dashboard)", self.base_url)

    async def stop(self) -> None:
        self.stopping.set()  # live streams end
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def login_url(self) -> dict[str, Any]:
        """A one-time login URL (the `dashboard` op)."""
        from golemd.http.auth import LOGIN_SECONDS

        token = self.logins.new_token()
        return {"url": f"{self.base_url}/login?token={token}", "expires_in": LOGIN_SECONDS,
                "loopback": is_loopback(self.host)}

    def open_connections(self) -> int:
        return len(self._live)

    # -- connections ----------------------------------------------------------------

    def _accept(self) -> asyncio.Protocol:
        assert self._runner is not None and self._runner.server is not None
        if self.open_connections() >= self.max_connections:
            return _Refuse()
        self.metrics.http_connection()
        handler = self._runner.server()
        self._live.add(handler)
        self._expect_head(handler, 0)
        return handler

    def _expect_head(self, handler: Any, served: int) -> None:
        """Close `handler`'s connection unless a request head arrives in time."""
        self._requests[handler] = served

        def check() -> None:
            if self._requests.get(handler) == served and handler.transport is not None:
                handler.transport.close()

        asyncio.get_running_loop().call_later(self.request_timeout, check)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        proto = request.protocol
        served = self._requests.get(proto, 0) + 1
        self._requests[proto] = served  # a head arrived: the check armed before passes
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "other"
        status = 500
        try:
            if request.path not in OPEN:
                session = self.logins.session(request.cookies.get(COOKIE))
                if session is None:
                    status = 401
                    return pages.unauthorized(request)
                if request.method not in ("GET", "HEAD") and not (
                        csrf_ok(session, request.headers.get("X-CSRF-Token")) and _same_origin(request)):
                    status = 403
                    return web.json_response({"ok": False, "error": {
                        "code": "UNAUTHORIZED", "message": "missing or wrong CSRF token: reload the page"}},
                        status=403)
                request[SESSION_KEY] = session
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.metrics.http_requests.inc(route, str(status))
            if not self.stopping.is_set() and proto.transport is not None:
                self._expect_head(proto, served)

    # -- the open routes ---------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _login(self, request: web.Request) -> web.StreamResponse:
        redeemed = self.logins.redeem(request.query.get("token", ""))
        if redeemed is None:
            return pages.unauthorized(request, "This login link is used up or expired.")
        sid, _session = redeemed
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                            max_age=int(self.logins.session_seconds))
        return response

    async def _session(self, request: web.Request) -> web.Response:
        """The session's CSRF token, for a script of this origin (no other can read it)."""
        session = request[SESSION_KEY]
        return web.json_response({"csrf": session.csrf,
                                  "expires_in": session.expires - self.logins.clock()})

    async def _logout(self, request: web.Request) -> web.Response:
        self.logins.end(request.cookies.get(COOKIE))
        response = web.Response(text="logged out")
        response.del_cookie(COOKIE, path="/")
        return response


def _same_origin(request: web.Request) -> bool:
    """A browser sends Origin with every POST; it must be this server's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site request (curl, scripts): the CSRF token decides
    return origin == f"{request.scheme}://{request.host}"


class _ClientFaults(logging.Filter):
    """aiohttp logs a request it cannot parse (a head over its limits, bad
    bytes) at ERROR with a traceback: that is the client's doing, and any
    local user could fill the log with it. It becomes one line at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        record.msg, record.args = "refused a malformed HTTP request: %s", (" ".join(str(exc).split()),)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return log.isEnabledFor(logging.DEBUG)


REQUESTS = logging.getLogger("golemd.http.requests")
REQUESTS.addFilter(_ClientFaults())


class _Refuse(asyncio.Protocol):
    """Over the connection limit: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()
