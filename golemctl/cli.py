"""golemctl: drive golemd from the shell. DESIGN.md section 3 is the contract:
commands, options, `--format json` documents and exit statuses.

golemctl runs once per command, so start-up time matters: at module level
only click and golemctl.command (click plus light stdlib) are imported. The
client (socket, msgpack), the agent-ID parser and the renderers are imported
inside the commands that use them.

Failures and exit statuses are handled in one place, golemctl.command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from golemctl.command import (
    CONTEXT,
    EXIT_CTRL_C,
    FORMATS,
    RootGroup,
    Settings,
    global_options,
    set_format,
    set_socket,
    usage_error,
)

if TYPE_CHECKING:
    from golemctl.client import Client


def _canonical(agent_id: str) -> str:
    """Refuse a bad agent ID (exit 2) before the daemon is contacted."""
    from golemd.model.agent_id import parse_agent_id

    return parse_agent_id(agent_id).canonical


def _connect(s: Settings) -> Client:
    from golemctl.client import Client

    return Client.connect(s.socket)


def _show(s: Settings, doc: Any, text: Callable[[], str]) -> None:
    from golemctl import render

    click.echo(render.to_json(doc) if s.json else text())


# --- the commands --------------------------------------------------------------


@click.group("golemctl", cls=RootGroup, context_settings=CONTEXT)
@click.option("--socket", "socket_path", envvar="GOLEMD_SOCKET", metavar="PATH",
              help="golemd's socket. Default: $GOLEMD_SOCKET; as root /run/golemd/golemd.sock; "
                   "else $XDG_RUNTIME_DIR/golemd/golemd.sock.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="text (for people; the default) or json (one JSON document on stdout; "
                   "bytes are base64 strings).")
@click.version_option(package_name="golemd", prog_name="golemctl")
@click.pass_context
def cli(ctx: click.Context, socket_path: str | None, fmt: str | None) -> None:
    """Drive golemd: invoke agents, inspect them, control the daemon.

    Exit status: 0 success, 1 the invocation or operation failed,
    2 usage error, 3 golemd cannot be reached.
    """
    set_socket(ctx, None, socket_path)
    set_format(ctx, None, fmt)


@cli.group("agent", context_settings=CONTEXT, short_help="Invoke and inspect agents.")
def agent_group() -> None:
    """Invoke and inspect agents (the arguments of Golem's `golem agent`).

    AGENT_ID is [ENV/]TypeName(args...), e.g. 'CounterAgent("c1")': quote it
    for the shell.
    """


@agent_group.command("invoke", context_settings={"ignore_unknown_options": True},
                     short_help="Invoke a method of an agent.")
@click.option("-t", "--trigger", is_flag=True,
              help="Enqueue and return at once; print the idempotency key.")
@click.option("-i", "--idempotency-key", "key", metavar="KEY|-",
              help="Idempotency key; '-' or none: a new UUID (printed).")
@click.option("--schedule-at", metavar="ISO8601",
              help="With --trigger: not before this time, with a zone (2026-11-25T10:00:00Z).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Kill the invocation if it runs longer than this (TIMEOUT).")
@click.option("--no-stream", is_flag=True, help="Do not show the agent's output while waiting.")
@click.argument("agent_id")
@click.argument("method")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@global_options
@click.pass_obj
def invoke_cmd(s: Settings, trigger: bool, key: str | None, schedule_at: str | None,
               timeout: float | None, no_stream: bool, agent_id: str, method: str,
               args: tuple[str, ...]) -> None:
    """Invoke METHOD of AGENT_ID with ARGS (Python literals: 5, -1.5, '"text"',
    '[1, 2]', None). The agent is created on its first invocation.

    Awaited (the default), the agent's output streams to stderr and the result
    is printed as a Python literal on the last line of stdout. --trigger
    enqueues it and prints the idempotency key. Put `--` before ARGS that look
    like options.
    """
    from golemctl.invoke import invoke

    invoke(s, _canonical(agent_id), method, args, trigger=trigger, key=key,
           schedule_at=schedule_at, timeout=timeout, stream=not no_stream)


@agent_group.command("get")
@click.argument("agent_id")
@global_options
@click.pass_obj
def get_cmd(s: Settings, agent_id: str) -> None:
    """Show an agent's metadata. Never creates the agent."""
    from golemctl import render

    aid = _canonical(agent_id)
    with _connect(s) as c:
        meta = c.get(aid)
    _show(s, meta, lambda: render.metadata(meta))


@agent_group.command("list")
@click.option("--env", metavar="ENV", help="Only agents of this environment.")
@click.option("--type", "type_", metavar="TYPE", help="Only agents of this type.")
@click.option("--status", metavar="STATUS",
              help="Only agents in this status: Idle, Running, Suspended, Interrupted, "
                   "Retrying or Failed.")
@global_options
@click.pass_obj
def list_cmd(s: Settings, env: str | None, type_: str | None, status: str | None) -> None:
    """List agents, ordered by agent ID."""
    from golemctl import render

    status = _agent_status(status)
    with _connect(s) as c:
        items = c.list(env=env, type=type_, status=status)
    _show(s, items, lambda: render.agents(items))


def _agent_status(text: str | None) -> str | None:
    if text is None:
        return None
    from golemd.model.states import AgentStatus

    for st in AgentStatus:
        if st.value.lower() == text.lower():
            return st.value
    names = ", ".join(st.value for st in AgentStatus)
    raise usage_error(f"--status {text!r} is not an agent status ({names})")


@agent_group.command("cancel-invocation", short_help="Cancel a pending invocation.")
@click.argument("agent_id")
@click.argument("idempotency_key")
@global_options
@click.pass_obj
def cancel_cmd(s: Settings, agent_id: str, idempotency_key: str) -> None:
    """Cancel a pending invocation before it starts (TOO_LATE once it started)."""
    aid = _canonical(agent_id)
    with _connect(s) as c:
        reply = c.cancel(aid, idempotency_key)
    _show(s, reply, lambda: f"canceled {reply.get('idempotency_key', idempotency_key)}")


def _agent_action(name: str, verb: str, call: Callable[[Client, str], dict[str, Any]],
                  short: str, doc: str, recover_flag: bool = False) -> None:
    """The commands that act on one agent and answer its metadata."""

    @global_options
    @click.pass_obj
    def command(s: Settings, agent_id: str, recover: bool = False) -> None:
        aid = _canonical(agent_id)
        with _connect(s) as c:
            meta = call(c, aid) if not recover else c.interrupt(aid, recover=True)
        done = "killed and recovering" if recover else verb
        _show(s, meta, lambda: f"{done} {meta.get('agent_id', aid)} (status: {meta.get('status', '?')})")

    command.__doc__ = doc
    command = click.argument("agent_id")(command)
    if recover_flag:
        command = click.option("--recover", is_flag=True,
                               help="Kill the process and retry the invocation at once; "
                                    "its caller still gets the result.")(command)
    agent_group.command(name, short_help=short)(command)


_agent_action("interrupt", "interrupted", lambda c, a: c.interrupt(a),
              "Stop an agent's running invocation and hold its queue.",
              "Stop the running invocation (its callers get INTERRUPTED) and hold the "
              "queue until `resume`.", recover_flag=True)
_agent_action("resume", "resumed", lambda c, a: c.resume(a), "Resume an interrupted agent.",
              "Resume an interrupted agent: rerun its interrupted invocation, then its queue.")
_agent_action("simulate-crash", "crashed and recovering", lambda c, a: c.simulate_crash(a),
              "Kill an agent's process as a crash would.",
              "Kill the agent's process as a crash would; it recovers and retries the invocation.")
_agent_action("delete", "deleted", lambda c, a: c.delete(a), "Delete an agent and all it stored.",
              "Delete the agent: its queue, saved state and stored outcomes. Awaiting callers "
              "get INTERRUPTED or CANCELED; the next invocation creates it afresh.")


@agent_group.command("invocations", short_help="Show an agent's running and pending invocations.")
@click.argument("agent_id")
@global_options
@click.pass_obj
def invocations_cmd(s: Settings, agent_id: str) -> None:
    """Show the running invocation and the pending queue, with their keys."""
    from golemctl import render

    aid = _canonical(agent_id)
    with _connect(s) as c:
        items = c.invocations(aid)
    _show(s, items, lambda: render.invocations(items))


@agent_group.command("oplog")
@click.argument("agent_id")
@click.option("--last", type=click.IntRange(min=0), metavar="N",
              help="Only the newest N entries (of those --from and --query leave).")
@click.option("--from", "from_index", type=click.IntRange(min=0), metavar="N",
              help="Only the entries from index N on.")
@click.option("--query", metavar="TEXT",
              help='Only the entries matching TEXT: words match anywhere, FIELD:VALUE one field '
                   '(kind, key, method, code, effect, args, result, error, target, detail), '
                   '"quoted phrases", -TERM negates; all must match. docs/protocol.md has the grammar.')
@global_options
@click.pass_obj
def oplog_cmd(s: Settings, agent_id: str, last: int | None, from_index: int | None, query: str | None) -> None:
    """Show the agent's history, oldest first, with each entry's content:
    arguments, results, errors and durable effects."""
    from golemctl import render
    from golemd.model.errors import Code, GolemError
    from golemd.wire.ops.oplog import BAD_QUERY

    aid = _canonical(agent_id)
    with _connect(s) as c:
        try:
            entries = c.oplog(aid, last=last, from_index=from_index, query=query)
        except GolemError as e:
            if e.code == Code.BAD_REQUEST and e.message.startswith(BAD_QUERY):
                raise usage_error(f"--query: {e.message[len(BAD_QUERY):]}") from None
            raise
    _show(s, entries, lambda: render.oplog(entries))


@agent_group.command("stream", short_help="Follow an agent's output live.")
@click.argument("agent_id")
@click.option("-f/-n", "--follow/--no-follow", default=True, show_default=True,
              help="Keep printing new output until Ctrl-C (or the agent is deleted); "
                   "--no-follow prints what is buffered and exits.")
@click.option("--last", type=click.IntRange(min=0), metavar="N",
              help="Start with the newest N buffered lines (default: all).")
@global_options
@click.pass_obj
def stream_cmd(s: Settings, agent_id: str, follow: bool, last: int | None) -> None:
    """Print the agent's recent output, then follow it live, like Golem's `agent stream`
    (one JSON document per line with --format json)."""
    from golemctl import render

    aid = _canonical(agent_id)

    def on_event(ev: dict[str, Any]) -> None:
        if ev.get("type", "output") == "output":
            click.echo(render.to_json(ev) if s.json else render.output_line(ev))

    try:
        with _connect(s) as c:
            reply = c.stream(aid, on_event, follow=follow, last=last)
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_CTRL_C) from None
    ended = reply.get("ended")
    if not s.json and ended not in (None, "done"):
        click.echo(f"stream ended: {'agent deleted' if ended == 'deleted' else ended}", err=True)


@cli.group("promise", context_settings=CONTEXT, short_help="Complete and inspect durable promises.")
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


@cli.command("types")
@global_options
@click.pass_obj
def types_cmd(s: Settings) -> None:
    """List the loaded agent types and their methods."""
    from golemctl import render

    with _connect(s) as c:
        items = c.types()
    _show(s, items, lambda: render.types(items))


@cli.group("daemon", context_settings=CONTEXT)
def daemon_group() -> None:
    """Query and control golemd itself."""


@daemon_group.command("status")
@global_options
@click.pass_obj
def status_cmd(s: Settings) -> None:
    """Show golemd's version, pid, uptime and agent counts."""
    from golemctl import render

    with _connect(s) as c:
        st = c.status()
    _show(s, st, lambda: render.status(st))


@daemon_group.command("stop")
@global_options
@click.pass_obj
def stop_cmd(s: Settings) -> None:
    """Shut golemd down gracefully, as SIGTERM does."""
    with _connect(s) as c:
        reply = c.stop()
    _show(s, reply, lambda: "golemd is shutting down")


@daemon_group.command("reload")
@global_options
@click.pass_obj
def reload_cmd(s: Settings) -> None:
    """Re-import the apps; new workers use the new code."""
    with _connect(s) as c:
        reply = c.reload()
    _show(s, reply, lambda: "golemd reloaded its apps")


def main() -> None:
    cli.main(prog_name="golemctl")
