"""`golemctl agent invoke`: argument checks, idempotency key, live output, result.

Everything the user typed is checked before the daemon is contacted: a bad
literal, key or time exits 2 and nothing is sent.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from golemctl import render
from golemctl.command import EXIT_CTRL_C, usage_error
from golemd.model.agent_id import parse_literal
from golemd.model.errors import Code, GolemError
from golemd.wire.ops.invoke import MAX_IDEMPOTENCY_KEY

if TYPE_CHECKING:
    from golemctl.command import Settings


def parse_args(texts: tuple[str, ...] | list[str]) -> list[Any]:
    return [parse_literal(t, f"argument {i}") for i, t in enumerate(texts, 1)]


def idempotency_key(given: str | None) -> str:
    """Like Golem's CLI, always send a key: '-' or none means a new UUID, so a
    retry after a lost connection can reuse it."""
    if given is None or given == "-":
        import uuid

        return str(uuid.uuid4())
    if not 1 <= len(given) <= MAX_IDEMPOTENCY_KEY:
        raise usage_error(f"an idempotency key must have 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return given


def schedule_seconds(text: str) -> float:
    """ISO 8601 with a zone -> Unix seconds. A naive time is refused rather
    than read as local time: the daemon may run in another zone (systemd)."""
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise usage_error(f"--schedule-at {text!r} is not an ISO 8601 time "
                     "(e.g. 2026-11-25T10:00:00Z)") from None
    if when.tzinfo is None:
        raise usage_error(f"--schedule-at {text!r} has no time zone; add Z or an offset "
                     "such as +01:00")
    return when.timestamp()


def invoke(s: Settings, agent: str, method: str, arg_texts: tuple[str, ...], *, trigger: bool,
           key: str | None, schedule_at: str | None, timeout: float | None, stream: bool) -> None:
    from golemctl.client import Client

    args = parse_args(arg_texts)
    if schedule_at is not None and not trigger:
        raise usage_error("--schedule-at needs --trigger (a scheduled invocation cannot be awaited)")
    at = schedule_seconds(schedule_at) if schedule_at is not None else None
    key = idempotency_key(key)
    with Client.connect(s.socket) as c:
        try:
            if trigger:
                reply = c.invoke(agent, method, args, idempotency_key=key, mode="trigger",
                                 schedule_at=at, timeout=timeout)
                _print_triggered(s, reply, key)
                return
            if not s.json:
                click.echo(f"idempotency key: {key}", err=True)
            reply = c.invoke(agent, method, args, idempotency_key=key, timeout=timeout,
                             stream=stream, on_event=_Events(agent) if stream else None)
        except KeyboardInterrupt:
            if trigger:
                raise
            click.echo(f"\nstopped waiting; golemd goes on with the invocation. To wait for "
                       f"its result again, repeat the command with -i {key}", err=True)
            raise click.exceptions.Exit(EXIT_CTRL_C) from None
        except GolemError as e:
            if e.code != Code.DAEMON_UNREACHABLE:
                raise
            # Connected, so the request may have been journaled before golemd
            # went away: the same key gets its outcome, and never runs it twice.
            again = _command_line(s, agent, method, arg_texts, key, trigger, schedule_at, timeout)
            raise GolemError(e.code, f"{e.message}. The invocation may have been accepted "
                             f"under idempotency key {key}: once golemd is back, `{again}` "
                             "gets its outcome (or, if it was not accepted, makes it)") from None
    if s.json:
        click.echo(render.to_json(reply))
    else:
        click.echo(repr(reply.get("result")))


def _print_triggered(s: Settings, reply: dict[str, Any], key: str) -> None:
    if s.json:
        click.echo(render.to_json(reply))
        return
    click.echo(reply.get("idempotency_key", key))
    status = reply.get("status")
    if status == "completed":
        click.echo(f"already completed with result {reply.get('result')!r}", err=True)
    elif status not in (None, "pending"):
        click.echo(f"already {status}", err=True)


def _command_line(s: Settings, agent: str, method: str, arg_texts: tuple[str, ...], key: str,
                  trigger: bool, schedule_at: str | None, timeout: float | None) -> str:
    """The golemctl command that asks for the same invocation under `key`."""
    import os
    import shlex

    words = ["golemctl"]
    if s.socket and s.socket != os.environ.get("GOLEMD_SOCKET"):
        words += ["--socket", s.socket]
    words += ["agent", "invoke"]
    if trigger:
        words.append("-t")
    words += ["-i", key]
    if schedule_at is not None:
        words += ["--schedule-at", schedule_at]
    if timeout is not None:
        words += ["--timeout", f"{timeout:g}"]
    words += [agent, method]
    if any(t.startswith("-") for t in arg_texts):
        words.append("--")
    words += arg_texts
    return " ".join(shlex.quote(w) for w in words)


class _Events:
    """Shows an awaited invocation's events on stderr as they come."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.held = False

    def __call__(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "held":
            # Queued on an interrupted agent: said at once, tty or not, or the
            # caller waits without knowing that only a resume ends the wait.
            if not self.held:
                click.echo(f"{self.agent} is interrupted: this invocation waits in its queue "
                           f"until `golemctl agent resume {_quote(self.agent)}`", err=True)
            self.held = True
            return
        if kind == "started":
            self.held = False
        _show_event(ev)


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


def _show_event(ev: dict[str, Any]) -> None:
    kind = ev.get("type")
    if kind == "output":
        click.echo(render.strip_eol(ev.get("line", "")), err=True)
    elif kind == "effect":
        # A durable effect the invocation makes (a call to another agent, a
        # step, a sleep...), shown as it happens; its result when it is journaled.
        click.echo(f"  -> effect {ev.get('seq')}: {ev.get('detail', ev.get('kind', ''))}", err=True)
    elif kind == "effect_done":
        click.echo(f"  <- effect {ev.get('seq')}: {ev.get('detail', '')}", err=True)
    elif kind == "queued" and sys.stderr.isatty():
        ahead = ev.get("ahead")
        if isinstance(ahead, int):
            click.echo(f"waiting: {render.plural(ahead, 'invocation')} ahead", err=True)
