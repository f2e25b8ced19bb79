"""`golemd`: run the daemon in the foreground, logging to stderr."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys

import click

from golemd.config import load_config


def _setup_logging(level: str, fmt_name: str = "text") -> None:
    if fmt_name == "json":
        from golemd.logjson import JsonFormatter

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level.upper(), handlers=[handler])
        return
    # Under systemd, stderr is the journal, which adds its own timestamps.
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if journal else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)


def _without_password(url: str) -> str:
    """A store URL as --check-config shows it: any password replaced."""
    import re

    return re.sub(r"(://[^:/@?]*:)[^@/?]*@", r"\1***@", re.sub(r"(password=)[^&]*", r"\1***", url))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "socket_", metavar="PATH", help="Unix socket to listen on (env GOLEMD_SOCKET).")
@click.option("--state-dir", metavar="DIR", help="Where the store lives (env GOLEMD_STATE_DIR).")
@click.option("--socket-group", metavar="GROUP",
              help="Make the socket 0660 and owned by GROUP (else 0600: only our user).")
@click.option("--app", "apps", multiple=True, metavar="MODULE_OR_FILE",
              help="An app to load: a .py file or a module name. Repeatable.")
@click.option("--config", "config_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="TOML configuration file.")
@click.option("--max-live-workers", type=int, help="Live worker processes before LRU suspension.")
@click.option("--idle-timeout", type=float, help="Seconds before an idle agent is suspended.")
@click.option("--spin-us", type=float, help="Microseconds to poll before sleeping (0: never).")
@click.option("--batch-calls", type=int, help="Queued calls sent to a worker at once (0: one at a time).")
@click.option("--suspend-after", type=float,
              help="Seconds an invocation waits (call, promise, sleep) before its process is stopped.")
@click.option("--drain-timeout", type=float, help="Seconds running invocations get at shutdown.")
@click.option("--max-pending", type=int, help="Pending invocations per agent before QUEUE_FULL.")
@click.option("--store", metavar="URL",
              help="Keep the journal in PostgreSQL (a postgresql:// URL) rather than in golemd.db in the "
                   "state directory (SQLite, the default).")
@click.option("--synchronous", type=click.Choice(["NORMAL", "FULL"], case_sensitive=False),
              help="SQLite durability: NORMAL survives a daemon crash, FULL also power loss.")
@click.option("--journal", type=click.Choice(["disk", "memory"]),
              help="memory: keep the store in memory, nothing survives a restart (benchmarks).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="json: one JSON object per line (ts, level, logger, message), for log shippers.")
@click.option("--http", "http", metavar="ADDR:PORT",
              help="Serve /metrics and the dashboard here (e.g. 127.0.0.1:7070); off by default.")
@click.option("--otel-endpoint", metavar="URL",
              help="Export a trace span per invocation over OTLP/HTTP (needs golemd[otel]).")
@click.option("--node", metavar="NAME", help="Run as this node of a cluster (needs --store postgresql://...).")
@click.option("--node-listen", metavar="HOST:PORT", help="Where other nodes reach this one (TCP).")
@click.option("--cluster-secret-file", metavar="FILE", help="The secret every node of the cluster holds.")
@click.option("--lease-timeout", type=float, help="Seconds a node keeps its agents without renewing (5).")
@click.option("--perf-off", "perf_off", multiple=True, type=click.Choice(["cork", "early_start", "lazy_commit"]),
              help="Turn a speed trick off, to measure it (repeatable).")
@click.option("--check-config", is_flag=True, help="Validate and print the effective configuration, then exit.")
def main(socket_: str | None, socket_group: str | None, state_dir: str | None, apps: tuple[str, ...], config_file: str | None,
         max_live_workers: int | None, idle_timeout: float | None, spin_us: float | None,
         batch_calls: int | None, suspend_after: float | None,
         drain_timeout: float | None,
         max_pending: int | None, store: str | None, synchronous: str | None, journal: str | None,
         log_level: str | None,
         log_format: str | None, http: str | None, otel_endpoint: str | None,
         node: str | None, node_listen: str | None, cluster_secret_file: str | None,
         lease_timeout: float | None, perf_off: tuple[str, ...], check_config: bool) -> None:
    """Run golemd in the foreground."""
    try:
        config = load_config(config_file, {
            "socket": socket_, "socket_group": socket_group, "state_dir": state_dir, "apps": apps,
            "max_live_workers": max_live_workers, "idle_timeout": idle_timeout, "spin_us": spin_us,
            "batch_calls": batch_calls, "suspend_after": suspend_after,
            "drain_timeout": drain_timeout, "max_pending": max_pending, "store": store,
            "synchronous": synchronous.upper() if synchronous else None, "journal": journal,
            "log_level": log_level.upper() if log_level else None, "log_format": log_format,
            "http": http, "otel_endpoint": otel_endpoint, "node": node, "node_listen": node_listen,
            "cluster_secret_file": cluster_secret_file, "lease_timeout": lease_timeout, "perf_off": perf_off})
    except (ValueError, OSError) as exc:
        click.echo(f"golemd: error: configuration: {exc}", err=True)
        sys.exit(2)
    if check_config:
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            click.echo(f"{field.name} = {_without_password(value) if field.name == 'store' else value!r}")
        return
    _setup_logging(config.log_level, config.log_format)
    os.umask(0o077)  # the store, its WAL and the agents' logs are ours alone
    from golemd.daemon import Daemon, StartupError
    from golemd.server.listener import SocketPathError
    from golemd.storage.base import StoreUnavailable

    try:
        from golemd.perf.spin import new_event_loop

        with asyncio.Runner(loop_factory=lambda: new_event_loop(config.spin_us)) as runner:
            code = runner.run(Daemon(config).run())
    except (StartupError, SocketPathError, StoreUnavailable) as exc:
        logging.getLogger("golemd").error("%s", exc)
        click.echo(f"golemd: error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()
