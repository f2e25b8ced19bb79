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
from golemctl.helpers import canonical as _canonical
from golemctl.helpers import connect as _connect
from golemctl.helpers import show as _show

if TYPE_CHECKING:
    from golemctl.client import Client

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


@agent_group.command("new")
@click.argument("agent_id")
@click.option("--env", "env_vars", metavar="NAME=VALUE", multiple=True,
              help="An environment variable of the agent's process, on every start. Repeatable.")
@global_options
@click.pass_obj
def new_cmd(s: Settings, agent_id: str, env_vars: tuple[str, ...]) -> None:
    """Create AGENT_ID without invoking it: its constructor runs now, in its
    own process, with the environment variables given. The same ID again
    with the same variables succeeds and changes nothing; with other
    variables it fails (AGENT_EXISTS): delete the agent to change them."""
    from golemctl import render

    env: dict[str, str] = {}
    for item in env_vars:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise usage_error(f"--env takes NAME=VALUE, not {item!r}")
        env[name] = value
    aid = _canonical(agent_id)
    with _connect(s) as c:
        reply = c.new(aid, env)
    meta = reply["agent"]
    _show(s, reply, lambda: ("created " if reply.get("created") else "exists already: ")
          + str(meta.get("agent_id")) + "\n" + render.metadata(meta))


@agent_group.command("list")
@click.option("--env", metavar="ENV", help="Only agents of this environment.")
@click.option("--type", "type_", metavar="TYPE", help="Only agents of this type.")
@click.option("--status", metavar="STATUS",
              help="Only agents in this status: Idle, Running, Suspended, Interrupted, "
                   "Retrying or Failed.")
@click.option("--filter", "filters", multiple=True, metavar="'PROP OP VALUE'",
              help="Only agents for which this holds (Golem's syntax). PROP: name, type, env, "
                   "status, created_at (Unix seconds or ISO 8601 with a zone) or pending; "
                   "OP: = == != < <= > >=, and for name, type and env like (contains), "
                   "notlike, startswith. Repeat it: all must hold.")
@click.option("--max-count", type=click.IntRange(min=1), metavar="N",
              help="At most N agents, then the --cursor of the next page (on stderr; "
                   "with --format json in the document).")
@click.option("--cursor", metavar="CURSOR",
              help="Start after this cursor, as an earlier --max-count gave it.")
@global_options
@click.pass_obj
def list_cmd(s: Settings, env: str | None, type_: str | None, status: str | None,
             filters: tuple[str, ...], max_count: int | None, cursor: str | None) -> None:
    """List agents, ordered by agent ID.

    Filters are Golem's: --filter 'type = CounterAgent' --filter 'pending > 0'
    lists the CounterAgents with invocations waiting.

    With --max-count or --cursor, --format json prints {"agents": [...],
    "cursor": NEXT} (NEXT null on the last page); else a list of agents.
    """
    from golemctl import render
    from golemd.model.errors import Code
    from golemd.model.filters import parse_filter
    from golemd.wire.ops.list_ import paged

    status = _agent_status(status)
    for text in filters:
        parse_filter(text, "--filter", Code.USAGE)  # refused here, before connecting
    with _connect(s) as c:
        items, after = c.run(paged(env, type_, status, filters, max_count, cursor))
    if max_count is None and cursor is None:
        _show(s, items, lambda: render.agents(items))
        return
    _show(s, {"agents": items, "cursor": after}, lambda: render.agents(items))
    if after is not None and not s.json:
        import shlex

        click.echo(f"next page: --cursor {shlex.quote(after)}", err=True)


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


@agent_group.command("revert", short_help="Take an agent's state back to before its last invocations.")
@click.argument("agent_id")
@click.option("--number-of-invocations", "count", type=click.IntRange(min=1), metavar="N",
              help="Revert the last N invocations that ran (completed or failed).")
@click.option("--last-oplog-index", "index", type=click.IntRange(min=0), metavar="I",
              help="Revert every invocation that finished after oplog entry I (`agent oplog`).")
@global_options
@click.pass_obj
def revert_cmd(s: Settings, agent_id: str, count: int | None, index: int | None) -> None:
    """Take the agent's state back to what it was before its last
    invocations, and forget them: their outcomes go, so their keys can run
    again. Give --number-of-invocations or --last-oplog-index. Refused
    (TOO_LATE) while an invocation runs or waits; pending ones stay queued."""
    if (count is None) == (index is None):
        raise usage_error("give one of --number-of-invocations N and --last-oplog-index I")
    aid = _canonical(agent_id)
    with _connect(s) as c:
        reply = c.revert(aid, number_of_invocations=count, last_oplog_index=index)
    keys = reply.get("reverted") or []
    _show(s, reply, lambda: f"reverted {aid}: {len(keys)} invocation{'' if len(keys) == 1 else 's'} "
          f"forgotten" + ("".join(f"\n  {k}" for k in keys)))


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

    if query is not None and query.strip():
        from golemd.model.oplog_query import QueryError, parse

        try:
            parse(query)  # refused here, as a bad --filter is, before golemd is asked
        except QueryError as e:
            raise usage_error(f"--query: {e}") from None
    aid = _canonical(agent_id)
    with _connect(s) as c:
        entries = c.oplog(aid, last=last, from_index=from_index, query=query)
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


# Registered here, defined beside: `golemctl promise ...` (golemctl.promises).
from golemctl.dashboard import dashboard_cmd  # noqa: E402 - after `cli` exists
from golemctl.promises import promise_group  # noqa: E402 - after `cli` exists

cli.add_command(promise_group)
cli.add_command(dashboard_cmd)


def main() -> None:
    cli.main(prog_name="golemctl")
