"""The click plumbing every golemctl command shares: the global options,
and one way to fail: `error: CODE: message` on stderr, the JSON error
document on stdout with --format json, and the contract's exit status
(golemd.model.errors.exit_status: 0 ok, 1 failed, 2 usage, 3 unreachable).

Imports only click and light stdlib modules, like cli.py: it is on the
start-up path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from golemd.model.errors import GolemError

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("text", "json")
EXIT_CTRL_C = 130
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Settings:
    """The global options, which may be given on the group or on a command."""

    __slots__ = ("fmt", "socket")

    def __init__(self) -> None:
        self.fmt: str | None = None
        self.socket: str | None = None

    @property
    def json(self) -> bool:
        return self.fmt == "json"


# --- errors and exit statuses ------------------------------------------------


def usage_error(message: str) -> GolemError:
    from golemd.model.errors import Code, GolemError

    return GolemError(Code.USAGE, message)


def _report(err: GolemError, as_json: bool) -> int:
    """Print a failure the one way every command does; return its exit status."""
    from golemctl import render
    from golemd.model.errors import exit_status

    if as_json:
        click.echo(render.to_json(render.error_json(err)))
    click.echo(render.error_text(err), err=True)
    return exit_status(err.code)


def _as_golem_error(e: Exception) -> GolemError | None:
    # golemd.model.errors is only loaded once a command needed it; if it is not
    # loaded, no GolemError can exist. Checking this way keeps it (and the
    # golemd package) out of `golemctl --help`.
    errors = sys.modules.get("golemd.model.errors")
    return e if errors is not None and isinstance(e, errors.GolemError) else None


def _internal(e: Exception) -> GolemError:
    from golemd.model.errors import Code, GolemError

    return GolemError(Code.INTERNAL, f"golemctl failed unexpectedly: {type(e).__name__}: {e} "
                                     "(GOLEMCTL_DEBUG=1 shows the traceback)")


def _argv_wants_json(argv: Sequence[str]) -> bool:
    """For usage errors raised before --format was parsed."""
    for i, tok in enumerate(argv):
        if tok == "--":
            break
        if tok == "--format=json" or (tok == "--format" and argv[i + 1:i + 2] == ["json"]):
            return True
    return False


class RootGroup(click.Group):
    """Runs click in non-standalone mode so that every failure, click's usage
    errors included, is printed as `error: CODE: message` (plus the JSON
    error document with --format json) and exits with the contract's status."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        settings = extra.setdefault("obj", Settings())
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            status = rv if isinstance(rv, int) else 0
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()
            status = e.exit_code
        except click.UsageError as e:
            if e.ctx is not None:
                click.echo(e.ctx.get_usage(), err=True)
                click.echo(f"Try '{e.ctx.command_path} --help' for help.\n", err=True)
            as_json = settings.json if settings.fmt else _argv_wants_json(argv)
            status = _report(usage_error(e.format_message()), as_json)
        except click.ClickException as e:
            e.show()
            status = e.exit_code
        except click.Abort:
            click.echo("Aborted!", err=True)
            status = EXIT_CTRL_C
        except Exception as e:
            err = _as_golem_error(e)
            if err is None:
                if os.environ.get("GOLEMCTL_DEBUG"):
                    raise
                err = _internal(e)
            status = _report(err, settings.json)
        if not standalone_mode:
            return status
        sys.exit(status)


# --- global options -------------------------------------------------------------


def set_format(ctx: click.Context, _param: click.Parameter | None, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Settings).fmt = value


def set_socket(ctx: click.Context, _param: click.Parameter | None, value: str | None) -> None:
    if value:
        ctx.ensure_object(Settings).socket = value


def global_options(f: F) -> F:
    """--format and --socket are accepted after the command too, as Golem's
    global flags are (`golemctl agent get X --format json`)."""
    f = click.option("--format", type=click.Choice(FORMATS), default=None, expose_value=False,
                     callback=set_format, help="Same as golemctl --format.")(f)
    return click.option("--socket", metavar="PATH", default=None, expose_value=False,
                        callback=set_socket, help="Same as golemctl --socket.")(f)
