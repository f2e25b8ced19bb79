"""The dashboard's login: one-time tokens handed out over the Unix socket
(golemctl dashboard, so the socket's permissions decide who may log in),
exchanged for a session cookie; a CSRF token per session for every POST.

A loopback port is open to every local user, so the token is the only way
in: 32 random bytes, good for one use within LOGIN_SECONDS. The session
cookie is HttpOnly (page scripts cannot read it) and SameSite=Strict (no
other site's page sends it); its CSRF token is given to the page and must
come back in the X-CSRF-Token header of each POST, compared in constant
time. Sessions expire after http_session_seconds, and live in memory: a
restart of golemd logs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "golemd_session"
LOGIN_SECONDS = 120.0
MAX_SESSIONS = 256  # the oldest goes first: a flood of logins cannot grow memory
MAX_TOKENS = 64


@dataclass(slots=True)
class Session:
    csrf: str
    expires: float


class Logins:
    def __init__(self, session_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.session_seconds = session_seconds
        self.clock = clock
        self._tokens: OrderedDict[str, float] = OrderedDict()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def new_token(self) -> str:
        """A one-time login token (golemctl dashboard's URL)."""
        self._expire()
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self.clock() + LOGIN_SECONDS
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)
        return token

    def redeem(self, token: str) -> tuple[str, Session] | None:
        """A new session for a valid, unused token (which is then spent); None otherwise."""
        self._expire()
        if self._tokens.pop(token, None) is None:
            return None
        sid = secrets.token_urlsafe(32)
        session = self._sessions[sid] = Session(secrets.token_urlsafe(32),
                                                self.clock() + self.session_seconds)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid, session

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._sessions[sid]
            return None
        return session

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, until in self._tokens.items() if until <= now]:
            del self._tokens[token]
        for sid in [s for s, sess in self._sessions.items() if sess.expires <= now]:
            del self._sessions[sid]


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
