"""`golemctl promise ...`: complete and inspect durable promises (DESIGN.md §5).
Light at import, as all of golemctl: the client is imported inside the commands."""

from __future__ import annotations

import click

from golemctl.command import CONTEXT, Settings, global_options
from golemctl.helpers import canonical as _canonical
from golemctl.helpers import connect as _connect
from golemctl.helpers import show as _show


@click.group("promise", context_settings=CONTEXT, short_help="Complete and inspect durable promises.")
def promise_group() -> None:
    """Complete and inspect durable promises: agent code makes one with
    `promise()` and waits on it with `p.wait()` until someone completes it.

    PROMISE_ID is the promise's `p.id` (`promise list` shows them).
    """


@promise_group.command("complete", context_settings={"ignore_unknown_options": True},
                       short_help="Complete a promise with a value.")
@click.argument("promise_id")
@click.argument("value", type=click.UNPROCESSED)
@global_options
@click.pass_obj
def promise_complete_cmd(s: Settings, promise_id: str, value: str) -> None:
    """Complete PROMISE_ID with VALUE; its waiting invocations go on with it.

    VALUE is a Python literal, parsed (never evaluated) as the ARGS of
    `agent invoke` are: 5, -1.5, '"approved"', '[1, 2]', '{"ok": True}',
    None. JSON is read too (true, false, null), and a VALUE that is
    neither, such as a bare word (yes), is that text as a string. Put `--`
    before a VALUE that looks like an option.

    The first completion wins: a later one fails with ALREADY_COMPLETED
    (exit 1), and an unknown ID with NOT_FOUND.
    """
    parsed = _promise_value(value)
    with _connect(s) as c:
        reply = c.promise_complete(promise_id, parsed)
    _show(s, reply, lambda: f"completed {reply.get('promise_id', promise_id)}")


def _promise_value(text: str) -> object:
    """A Python literal, else JSON, else the text itself (a bare word)."""
    import json

    from golemd.model.agent_id import parse_literal
    from golemd.model.errors import GolemError

    try:
        return parse_literal(text, "VALUE")
    except GolemError as err:
        try:
            return json.loads(text)
        except ValueError:
            pass
        if text.strip() and not any(ch in text for ch in "\"'[]{}()"):
            return text
        raise err from None


@promise_group.command("get", short_help="Show a promise.")
@click.argument("promise_id")
@global_options
@click.pass_obj
def promise_get_cmd(s: Settings, promise_id: str) -> None:
    """Show a promise: its agent and invocation, whether it is completed, and its value."""
    from golemctl import render

    with _connect(s) as c:
        info = c.promise_get(promise_id)
    _show(s, info, lambda: render.promise(info))


@promise_group.command("list", short_help="List pending promises.")
@click.argument("agent_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Completed promises too.")
@global_options
@click.pass_obj
def promise_list_cmd(s: Settings, agent_id: str | None, all_: bool) -> None:
    """List pending promises, oldest first: AGENT_ID's, or every agent's.
    With --all, completed ones too."""
    from golemctl import render

    aid = _canonical(agent_id) if agent_id is not None else None
    with _connect(s) as c:
        items = c.promise_list(aid, all=all_)
    _show(s, items, lambda: render.promises(items))
