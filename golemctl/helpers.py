"""What golemctl's commands share: the agent-ID check, the connection, the output."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from golemctl.client import Client
    from golemctl.command import Settings


def canonical(agent_id: str) -> str:
    """Refuse a bad agent ID (exit 2) before the daemon is contacted."""
    from golemd.model.agent_id import parse_agent_id

    return parse_agent_id(agent_id).canonical


def connect(s: Settings) -> Client:
    from golemctl.client import Client

    return Client.connect(s.socket)


def show(s: Settings, doc: Any, text: Callable[[], str]) -> None:
    from golemctl import render

    click.echo(render.to_json(doc) if s.json else text())
