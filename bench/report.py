"""The results table, the goals of the Performance issue, and bench/RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.systems import ROOT


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    fmt: str
    ratio: bool = True  # a ratio to the floor means something


METRICS = [
    Metric("ready_s", "start-up until `status` answers (s)", "{:.2f}"),
    Metric("w1_p50_us", "W1 warm call p50 (us)", "{:.0f}"),
    Metric("w1_p99_us", "W1 warm call p99 (us)", "{:.0f}"),
    Metric("w2_calls_s", "W2 pipelined throughput (calls/s)", "{:,.0f}"),
    Metric("w2_cpu_us", "W2 CPU per call, server + workers (us, schedstat)", "{:.1f}"),
    Metric("w2_cpu_server_us", "W2 CPU per call, server process (us)", "{:.1f}"),
    Metric("w2_cpu_workers_us", "W2 CPU per call, workers (us)", "{:.1f}"),
    Metric("w3_median_ms", "W3 first call, median (ms)", "{:.2f}"),
    Metric("w3_p90_ms", "W3 first call, p90 (ms)", "{:.2f}"),
    Metric("w4_agents", "W4 agents invoked", "{:,}", ratio=False),
    Metric("w4_wall_s", "W4 wall time (s)", "{:.2f}", ratio=False),
    Metric("w4_agents_s", "W4 new agents per second", "{:,.0f}"),
    Metric("w4_pss_mb", "W4 total PSS, server + descendants (MB)", "{:,.0f}", ratio=False),
    Metric("w4_processes", "W4 processes in the server's tree", "{:,}", ratio=False),
    Metric("w4_daemon_rss_mb", "W4 server process RSS after (MB)", "{:,.1f}", ratio=False),
    Metric("cli_ms", "CLI `golemctl agent get` wall, median (ms) (floor column: python -c import)",
           "{:.1f}"),
    Metric("idle_cpu_pct", "idle CPU over 5 s, server process (%)", "{:.2f}", ratio=False),
    Metric("idle_cpu_tree_pct", "idle CPU over 5 s, whole tree (%)", "{:.2f}", ratio=False),
    Metric("foreign_cpu_pct", "noise: other processes' CPU during W1-W3, CLI (% of a core)", "{:.0f}",
           ratio=False),
    Metric("foreign_cpu_w4_pct", "noise: other processes' CPU during W4, IDLE (% of a core)", "{:.0f}",
           ratio=False),
    Metric("steal_pct", "noise: the VM's steal time during W1-W3, CLI (% of a core)", "{:.0f}",
           ratio=False),
    Metric("steal_w4_pct", "noise: the VM's steal time during W4, IDLE (% of a core)", "{:.0f}",
           ratio=False),
]


@dataclass(frozen=True)
class Goal:
    text: str
    check: Callable[[dict[str, Any], dict[str, Any], str], tuple[bool, str] | None]  # (system, floor, its name)


def _ratio(sys_: dict[str, Any], floor: dict[str, Any], key: str) -> float | None:
    a, b = sys_.get(key), floor.get(key)
    if a is None or not b:
        return None
    return float(a) / float(b)


def _goal_ratio(key: str, limit: float, higher: bool) -> Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str] | None]:
    def check(s: dict[str, Any], f: dict[str, Any]) -> tuple[bool, str] | None:
        r = _ratio(s, f, key)
        if r is None:
            return None
        return (r >= limit if higher else r <= limit), f"{r:.2f}x"
    return check


def _goal_abs(key: str, limit: float, unit: str) -> Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str] | None]:
    def check(s: dict[str, Any], f: dict[str, Any]) -> tuple[bool, str] | None:
        v = s.get(key)
        if v is None:
            return None
        return v < limit, f"{v:,.2f} {unit}"
    return check


def _cli_goal(s: dict[str, Any], f: dict[str, Any]) -> tuple[bool, str] | None:
    if s.get("cli_ms") is None or not s.get("cli_base_ms"):
        return None
    r = s["cli_ms"] / s["cli_base_ms"]
    return r <= 1.3, f"{r:.2f}x ({s['cli_ms']:.1f} vs {s['cli_base_ms']:.1f} ms)"


def _w4_full(s: dict[str, Any]) -> bool:
    return s.get("w4_agents", 0) >= 10_000


def _w4_goal(key: str, limit: float, unit: str) -> Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str] | None]:
    base = _goal_abs(key, limit, unit)

    def check(s: dict[str, Any], f: dict[str, Any]) -> tuple[bool, str] | None:
        out = base(s, f)
        if out is None:
            return None
        ok, text = out
        if not _w4_full(s):
            text += f" (only {s.get('w4_agents', 0):,} agents: not the goal's workload)"
            ok = False
        return ok, text
    return check


def _only(names: tuple[str, ...], check: Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str] | None],
          ) -> Callable[[dict[str, Any], dict[str, Any], str], tuple[bool, str] | None]:
    def on(s: dict[str, Any], f: dict[str, Any], name: str) -> tuple[bool, str] | None:
        return check(s, f) if name in names else None
    return on


def _all(check: Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str] | None],
         ) -> Callable[[dict[str, Any], dict[str, Any], str], tuple[bool, str] | None]:
    return lambda s, f, name: check(s, f)


# The engine step's goals (issue 11), as ratios to the floor in the same run.
GOALS = [
    Goal("W1 p50 <= 1.5x the floor's (polling on)", _only(("golemd",), _goal_ratio("w1_p50_us", 1.5, higher=False))),
    Goal("W1 p50 <= 2x the floor's with spin_us = 0",
         _only(("golemd-nopoll",), _goal_ratio("w1_p50_us", 2.0, higher=False))),
    Goal("W2 throughput >= 0.3x the floor's, journal on",
         _only(("golemd",), _goal_ratio("w2_calls_s", 0.3, higher=True))),
    Goal("W2 CPU per call (server + workers) <= 3x the floor's",
         _only(("golemd",), _goal_ratio("w2_cpu_us", 3.0, higher=False))),
    Goal("W3 first-call median <= 2x the floor's", _all(_goal_ratio("w3_median_ms", 2.0, higher=False))),
    Goal("W4 10,000 agents in at most 15 s", _all(_w4_goal("w4_wall_s", 15.0, "s"))),
    Goal("W4 total PSS of golemd and its workers at most 600 MB", _all(_w4_goal("w4_pss_mb", 600.0, "MB"))),
    Goal("W4 daemon RSS after under 300 MB", _all(_w4_goal("w4_daemon_rss_mb", 300.0, "MB"))),
    Goal("`golemctl agent get` <= 1.3x `python -c \"import click, msgpack\"`", _all(_cli_goal)),
    Goal("idle daemon ~0% CPU (taken as < 1% of one core)", _all(_goal_abs("idle_cpu_pct", 1.0, "%"))),
]


def fmt(metric: Metric, value: Any) -> str:
    if value is None:
        return "-"
    try:
        return metric.fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(results: dict[str, dict[str, Any]], systems: list[str]) -> list[list[str]]:
    """Rows of strings: the header, then one row per metric that any system has."""
    floor = results.get("floor", {})
    header = ["figure"]
    for name in systems:
        header.append(name)
        if name != "floor":
            header.append("x floor")
    rows = [header]
    for m in METRICS:
        if not any(m.key in results.get(s, {}) for s in systems):
            continue
        row = [m.label]
        for name in systems:
            res = results.get(name, {})
            value = res.get(m.key)
            if m.key == "cli_ms" and name == "floor":
                value = next((results[s].get("cli_base_ms") for s in systems
                              if results.get(s, {}).get("cli_base_ms")), None)
            row.append(fmt(m, value) if not res.get("skipped") else "n/a")
            if name != "floor":
                r = None
                if m.key == "cli_ms" and res.get("cli_base_ms"):
                    r = res["cli_ms"] / res["cli_base_ms"]
                elif m.ratio:
                    r = _ratio(res, floor, m.key)
                row.append(f"{r:.2f}" if r is not None else "")
        rows.append(row)
    return rows


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def goal_lines(results: dict[str, dict[str, Any]], systems: list[str]) -> list[str]:
    floor = results.get("floor", {})
    lines = []
    for name in systems:
        if not name.startswith("golemd") or results.get(name, {}).get("skipped"):
            continue
        for g in GOALS:
            out = g.check(results[name], floor, name)
            if out is None:
                continue
            ok, text = out
            lines.append(f"{name}: {'MET   ' if ok else 'MISSED'} {g.text}: {text}")
    return lines


VARIANTS = {"golemd-nojournal": "Cost of the journal (golemd / golemd-nojournal)",
            "golemd-nopoll": "What polling does (golemd / golemd-nopoll, spin_us = 0)",
            "golemd-nobatch": "What batching does (golemd / golemd-nobatch, batch_calls = 0)",
            "golemd-nocork": "What corking does (golemd / golemd-nocork, perf_off = cork)",
            "golemd-noearly": "What the early start does (golemd / golemd-noearly, perf_off = early_start)",
            "golemd-nolazy": "What the lazy commit does (golemd / golemd-nolazy, perf_off = lazy_commit)"}


def variant_lines(results: dict[str, dict[str, Any]], variant: str) -> list[str]:
    """golemd's figures over those of one of its variants."""
    on, off = results.get("golemd", {}), results.get(variant, {})
    what = variant.removeprefix("golemd-no")
    lines = []
    for key, label in (("w1_p50_us", "W1 p50"), ("w1_p99_us", "W1 p99"), ("w2_calls_s", "W2 throughput"),
                       ("w2_cpu_us", "W2 CPU per call"),
                       ("w3_median_ms", "W3 median"), ("w4_wall_s", "W4 wall")):
        if on.get(key) and off.get(key):
            lines.append(f"{label}: {what} on {on[key]:,.2f} / off {off[key]:,.2f} = {on[key] / off[key]:.2f}")
    return lines


# -- the machine ---------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": _ram(),
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
    }


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_results(path: str, command: str, results: dict[str, dict[str, Any]], systems: list[str],
                  notes: list[str], duration_s: float, load_before: str) -> None:
    rows = table(results, systems)
    m = machine()
    parts = [
        "# golemd benchmark results",
        "",
        "Written by `python -m bench.run` (see bench/README.md); numbers are one run on one machine,",
        "benchmark figures rather than test assertions. Ratios are system / floor.",
        "",
        f"- date: {now()}",
        f"- commit: {commit()}",
        f"- command: `{command}` ({duration_s:.0f} s)",
        f"- machine: {m['CPU']}, {m['cores']} cores, {m['RAM']} RAM, {m['kernel']}, Python {m['Python']}",
        f"- before the run: load average (1, 5, 15 min) {load_before}; load average after: {load()} "
        "(anything else running on the machine shows in the figures)",
        "",
        "## Figures",
        "",
        render_markdown(rows),
        "",
    ]
    goals = goal_lines(results, systems)
    if goals:
        parts += ["## Goals (the engine step, issue 11)", ""] + [f"- {g}" for g in goals] + [""]
    for variant, heading in VARIANTS.items():
        lines = variant_lines(results, variant)
        if lines:
            parts += [f"## {heading}", ""] + [f"- {line}" for line in lines] + [""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    # What follows the marker is written by hand: a run keeps it.
    try:
        with open(path) as f:
            before = f.read()
    except FileNotFoundError:
        before = ""
    at = before.find(HAND_WRITTEN)
    if at >= 0:
        parts += [before[at:].rstrip("\n"), ""]
    with open(path, "w") as f:
        f.write("\n".join(parts))


HAND_WRITTEN = "## Across runs (hand-written"

