"""Run the benchmark suite: every system, every workload, one run.

    python -m bench.run                                   # everything (make bench)
    python -m bench.run --only W1,W2 --systems floor,golemd,golemd-nojournal
    python -m bench.run --only W1,W2 --systems golemd --profile /tmp/prof --no-results

Systems: floor (bench/floor.py, the yardstick), golemd (journal on disk),
golemd-nojournal (`--journal memory`), ray and restate (optional: run when
installed, see bench/README.md). Workloads: W1 W2 W3 W4 CLI IDLE.
Prints the table and writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import report, workloads
from bench.noise import ForeignCPU
from bench.systems import ROOT, Server

PERF_OFF = {"golemd-nocork": "cork", "golemd-noearly": "early_start", "golemd-nolazy": "lazy_commit"}
ALL_SYSTEMS = ["floor", "golemd", "golemd-nojournal", "golemd-nopoll", "golemd-nobatch", *PERF_OFF,
               "ray", "restate"]
ALL_WORKLOADS = ["W1", "W2", "W3", "W4", "CLI", "IDLE"]
EXTERNAL_WORKLOADS = {"W1", "W2", "W3"}


def say(msg: str) -> None:
    print(msg, flush=True)


def _csv(text: str, allowed: list[str], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed and x.upper() not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (known: {', '.join(allowed)})")
    return items


LOCAL_SYSTEMS = ["floor", "golemd", "golemd-nojournal", "golemd-nopoll", "golemd-nobatch", *PERF_OFF]
SIDE_BY_SIDE = ["W1", "W2", "W3", "CLI"]
ONE_AT_A_TIME = ["W4", "IDLE"]
# golemd-nopoll and golemd-nobatch show what polling (spin_us) and batching
# (batch_calls) do to the calls, so they run W1-W3 only.
CALLS_ONLY = {"golemd-nopoll", "golemd-nobatch", *PERF_OFF}


def new_server(name: str, args: argparse.Namespace, phase: str) -> Server:
    journal = "memory" if name == "golemd-nojournal" else None
    profile = None
    if args.profile and name.startswith("golemd"):
        profile = os.path.join(args.profile, f"{name}-{phase}.prof")
    return Server(name, journal=journal, profile=profile, spin_us=0.0 if name == "golemd-nopoll" else None,
                  batch_calls=0 if name == "golemd-nobatch" else None,
                  extra=("--perf-off", PERF_OFF[name]) if name in PERF_OFF else ())


def stop_server(server: Server) -> None:
    server.stop()
    if server.profile:
        say(f"[{server.name}] profile written to {server.profile}")
        show_profile(server.profile)


def _record(res: dict[str, Any], name: str, w: str, out: dict[str, Any], t0: float) -> None:
    res["notes"].extend(f"{name}: {n}" for n in out.pop("notes", []))
    res.update(out)
    shown = ", ".join(_show(k, v) for k, v in out.items())
    say(f"[{name}] {w}: {shown}  ({time.perf_counter() - t0:.1f} s)")


def _once(w: str, server: Server, rep: int, args: argparse.Namespace) -> dict[str, Any]:
    if w == "W1":
        return workloads.w1(server, calls=args.w1_calls)
    if w == "W2":
        return workloads.w2(server, agents=args.w2_agents, calls=args.w2_calls, window=args.w2_window)
    return workloads.w3(server, count=args.w3_count, tag=f"r{rep}")


def run_local(names: list[str], only: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The floor and golemd. W1-W3 and CLI side by side: every system up at once,
    each repeat of a workload going round all of them (starting with another one
    each time), so that a disturbance hits them alike. W4 and IDLE one system
    at a time, each on a fresh server with nothing else of ours running (PSS
    splits shared pages among every process that maps them)."""
    res: dict[str, dict[str, Any]] = {n: {"notes": []} for n in names}
    side = [w for w in only if w in SIDE_BY_SIDE]
    if side:
        servers: dict[str, Server] = {}
        noise = ForeignCPU()
        try:
            for n in names:
                say(f"[{n}] starting")
                servers[n] = new_server(n, args, "side")
                servers[n].start()
                res[n]["ready_s"] = servers[n].ready_s
            for w in side:
                if w == "CLI":
                    for n in names:
                        if n != "floor" and n not in CALLS_ONLY:
                            t0 = time.perf_counter()
                            _record(res[n], n, w, workloads.cli(servers[n], runs=args.cli_runs), t0)
                    continue
                runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
                took = dict.fromkeys(names, 0.0)
                for rep in range(args.repeat):
                    k = rep % len(names)
                    for n in names[k:] + names[:k]:
                        t0 = time.perf_counter()
                        runs[n].append(_once(w, servers[n], rep, args))
                        took[n] += time.perf_counter() - t0
                for n in names:
                    _record(res[n], n, w, merge_runs(runs[n]), time.perf_counter() - took[n])
        finally:
            for server in servers.values():
                stop_server(server)
        pct, steal = noise.percent(), noise.steal_percent()
        for n in names:
            res[n]["foreign_cpu_pct"] = pct
            res[n]["steal_pct"] = steal
    alone = [w for w in only if w in ONE_AT_A_TIME]
    for n in [n for n in names if n not in CALLS_ONLY] if alone else []:
        server = new_server(n, args, "w4")
        say(f"[{n}] starting fresh for {', '.join(alone)}")
        noise = ForeignCPU()
        server.start()
        res[n].setdefault("ready_s", server.ready_s)
        try:
            for w in alone:
                t0 = time.perf_counter()
                if w == "W4":
                    count = min(args.w4_agents, args.floor_w4_agents) if n == "floor" else args.w4_agents
                    out = workloads.w4(server, agents=count, window=args.w4_window)
                    if n == "floor" and count < args.w4_agents:
                        out.setdefault("notes", []).append(
                            f"W4 capped at {count:,} agents: the floor keeps one live process per "
                            f"agent ever invoked (no budget), and {args.w4_agents:,} live processes "
                            "may exhaust a 2-core, 24 GiB machine; its wall time and memory are "
                            "for that smaller run (compare agents per second, not wall time)")
                else:
                    if "W4" not in alone:
                        workloads.ensure_agents(server, 1000)
                    out = workloads.idle(server)
                _record(res[n], n, w, out, t0)
        finally:
            stop_server(server)
        res[n]["foreign_cpu_w4_pct"] = noise.percent()
        res[n]["steal_w4_pct"] = noise.steal_percent()
    for n in names:
        if not res[n]["notes"]:
            del res[n]["notes"]
    return res


def wait_quiet(max_wait: float, threshold: float = 15.0) -> float:
    """Wait (up to `max_wait` s) until the machine's CPUs are mostly idle: the
    figures are only worth something on a quiet machine. The last busy %."""
    import psutil

    start = time.monotonic()
    said = -60.0
    while True:
        busy = psutil.cpu_percent(interval=2.0)
        if busy < threshold:
            return busy
        waited = time.monotonic() - start
        if waited > max_wait:
            say(f"WARNING: the machine is still {busy:.0f}% busy; the figures will show it")
            return busy
        if waited - said >= 60:
            said = waited
            say(f"the machine is {busy:.0f}% busy; waiting up to {max_wait - waited:.0f} s more "
                "for it to calm down (--wait-quiet)")


def _show(key: str, value: Any) -> str:
    if isinstance(value, list):
        return f"{key}=[{', '.join(f'{v:,.1f}' for v in value)}]"
    return f"{key}={value:,.2f}" if isinstance(value, float) else f"{key}={value}"


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure as the median over the runs (a shared 2-core machine is
    noisy), with every run's value kept beside it."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        out[key] = statistics.median(values)
        if len(runs) > 1:
            out[f"{key}_runs"] = values
    return out


def show_profile(path: str, top: int = 25) -> None:
    try:
        stats = pstats.Stats(path)
    except (OSError, TypeError, EOFError) as exc:
        say(f"  (cannot read {path}: {exc})")
        return
    for order in ("cumulative", "tottime"):
        say(f"--- {path}: top {top} by {order} ---")
        stats.sort_stats(order).print_stats(top)


def _has(python: str, modules: str) -> bool:
    try:
        r = subprocess.run([python, "-c", f"import {modules}"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def run_external(name: str, cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run bench.ray_bench or bench.restate_bench in its own interpreter; its last stdout line is JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"]
                                                   if os.environ.get("PYTHONPATH") else "")}
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    say(f"[{name}] running {shlex.join(cmd)} (log {log.name})")
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, timeout=timeout,
                           start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"skipped": True, "notes": [f"{name}: timed out after {timeout:.0f} s (log {log.name})"]}
    finally:
        log.close()
    lines = r.stdout.decode(errors="replace").strip().splitlines()
    try:
        figures = json.loads(lines[-1])
    except (IndexError, ValueError):
        with open(log.name, errors="replace") as f:
            tail = "".join(f.readlines()[-5:]).strip()
        return {"skipped": True, "notes": [f"{name}: failed (exit {r.returncode}): {tail}"]}
    os.unlink(log.name)
    return figures


def run_ray(only: list[str], args: argparse.Namespace) -> dict[str, Any]:
    python = args.ray_python or os.environ.get("BENCH_RAY_PYTHON") or sys.executable
    if not _has(python, "ray"):
        return {"skipped": True, "notes": ["ray: not installed (give --ray-python or BENCH_RAY_PYTHON, "
                                           "an interpreter where `import ray` works)"]}
    sel = [w for w in only if w in EXTERNAL_WORKLOADS]
    if not sel:
        return {"skipped": True}
    res = run_external("ray", [python, "-m", "bench.ray_bench", "--only", ",".join(sel),
                               "--w1-calls", str(args.w1_calls), "--w2-agents", str(args.w2_agents),
                               "--w2-calls", str(args.ext_w2_calls), "--window", str(args.w2_window),
                               "--w3-count", str(args.ray_w3_count)], timeout=900)
    return _external_notes("ray", res, f"Ray {res.get('version', '?')} actors (num_cpus=0), same "
                           "BenchCounter class; W1-W3 only")


def run_restate(only: list[str], args: argparse.Namespace) -> dict[str, Any]:
    python = args.restate_python or os.environ.get("BENCH_RESTATE_PYTHON") or sys.executable
    server = args.restate_server or os.environ.get("BENCH_RESTATE_SERVER") or shutil.which("restate-server")
    if not server or not _has(python, "restate, hypercorn"):
        return {"skipped": True, "notes": ["restate: not installed (needs a restate-server binary: "
                                           "--restate-server or BENCH_RESTATE_SERVER, and an "
                                           "interpreter with restate-sdk and hypercorn: "
                                           "--restate-python or BENCH_RESTATE_PYTHON)"]}
    sel = [w for w in only if w in EXTERNAL_WORKLOADS]
    if not sel:
        return {"skipped": True}
    res = run_external("restate", [python, "-m", "bench.restate_bench", "run", "--server", server,
                                   "--only", ",".join(sel), "--w1-calls", str(args.w1_calls),
                                   "--w2-agents", str(args.w2_agents), "--w2-calls", str(args.ext_w2_calls),
                                   "--w3-count", str(args.w3_count)], timeout=900)
    return _external_notes("restate", res, f"{res.get('version', 'restate-server ?')} with the Python "
                           "SDK under hypercorn, a virtual object keyed by agent name, called over "
                           "the HTTP ingress; journal always on; W1-W3 only")


def _external_notes(name: str, res: dict[str, Any], what: str) -> dict[str, Any]:
    notes = res.setdefault("notes", [])
    if res.get("skipped"):
        return res
    notes.insert(0, f"{name}: {what}")
    for key in ("w2_note", "w3_note"):
        if key in res:
            notes.append(f"{name} {key[:2].upper()}: {res.pop(key)}")
    res.pop("version", None)
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(ALL_WORKLOADS), help="workloads, comma-separated")
    p.add_argument("--systems", default=",".join(ALL_SYSTEMS), help="systems, comma-separated")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"), help="where to write the report")
    p.add_argument("--no-results", action="store_true", help="print only; leave RESULTS.md alone")
    p.add_argument("--profile", metavar="DIR", help="run golemd under cProfile, write DIR/NAME.prof")
    p.add_argument("--wait-quiet", type=float, default=300, metavar="SECONDS",
                   help="wait up to this long for the machine's CPUs to be idle before starting")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of W1, W2 and W3 on each of the floor and golemd; the median is shown")
    p.add_argument("--w1-calls", type=int, default=2000)
    p.add_argument("--w2-agents", type=int, default=100)
    p.add_argument("--w2-calls", type=int, default=20_000)
    p.add_argument("--w2-window", type=int, default=1000)
    p.add_argument("--w3-count", type=int, default=200)
    p.add_argument("--w4-agents", type=int, default=10_000)
    p.add_argument("--w4-window", type=int, default=200)
    p.add_argument("--floor-w4-agents", type=int, default=1000,
                   help="cap of the floor's W4 (one live process per agent)")
    p.add_argument("--cli-runs", type=int, default=20)
    p.add_argument("--ext-w2-calls", type=int, default=5000, help="W2 calls for Ray and Restate")
    p.add_argument("--ray-w3-count", type=int, default=30, help="W3 new actors for Ray (~0.3 s each)")
    p.add_argument("--ray-python", help="an interpreter where `import ray` works")
    p.add_argument("--restate-python", help="an interpreter with restate-sdk and hypercorn")
    p.add_argument("--restate-server", help="the restate-server binary")
    args = p.parse_args(argv)
    only = [w.upper() for w in _csv(args.only, ALL_WORKLOADS, "workloads")]
    only = [w for w in ALL_WORKLOADS if w in only]  # always in this order: IDLE after W4
    systems = _csv(args.systems, ALL_SYSTEMS, "systems")
    systems = [s for s in ALL_SYSTEMS if s in systems]
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in
                   ("BENCH_RAY_PYTHON", "BENCH_RESTATE_PYTHON", "BENCH_RESTATE_SERVER") if os.environ.get(k))
    command = (env + " " if env else "") + "python -m bench.run" + (
        "" if argv is None and len(sys.argv) <= 1 else " " + shlex.join(sys.argv[1:] if argv is None else argv))
    busy = wait_quiet(args.wait_quiet)
    load_before = f"{report.load()}, CPU {busy:.0f}% busy over 2 s"
    say(f"before the run: load average {load_before}")
    t_start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    local = [s for s in systems if s in LOCAL_SYSTEMS]
    if local:
        try:
            results.update(run_local(local, only, args))
        except Exception as exc:
            say(f"[{', '.join(local)}] FAILED: {exc}")
            for name in local:
                results[name] = {"skipped": True, "notes": [f"{name}: failed: {exc}"]}
    for name in [s for s in systems if s not in LOCAL_SYSTEMS]:
        foreign = ForeignCPU()
        try:
            results[name] = run_ray(only, args) if name == "ray" else run_restate(only, args)
        except Exception as exc:  # one system failing must not lose the others' figures
            say(f"[{name}] FAILED: {exc}")
            results[name] = {"skipped": True, "notes": [f"{name}: failed: {exc}"]}
        if not results[name].get("skipped"):
            results[name]["foreign_cpu_pct"] = foreign.percent()
    for name in systems:
        res = results[name]
        for key, what in (("foreign_cpu_pct", "W1-W3"), ("foreign_cpu_w4_pct", "W4")):
            if res.get(key, 0) > 10:
                res.setdefault("notes", []).append(
                    f"{name}: other processes used {res[key]:.0f}% of a core during {what}: "
                    "those figures are disturbed")
        for key, what in (("steal_pct", "W1-W3"), ("steal_w4_pct", "W4")):
            if res.get(key, 0) > 10:
                res.setdefault("notes", []).append(
                    f"{name}: the host took {res[key]:.0f}% of a core from this VM (steal) during {what}: "
                    "those figures are disturbed")
        for note in res.get("notes", []):
            say(f"[{name}] note: {note}")
    duration = time.perf_counter() - t_start
    rows = report.table(results, systems)
    say("")
    say(report.render_text(rows))
    goals = report.goal_lines(results, systems)
    if goals:
        say("\nGoals (the engine step, issue 11):")
        for g in goals:
            say("  " + g)
    for variant, heading in report.VARIANTS.items():
        lines = report.variant_lines(results, variant)
        if lines:
            say(f"\n{heading}:")
            for line in lines:
                say("  " + line)
    notes = [n for s in systems for n in results.get(s, {}).get("notes", [])]
    say(f"\n{len(systems)} systems in {duration:.0f} s")
    if not args.no_results:
        report.write_results(args.results, command, results, systems, notes, duration, load_before)
        say(f"wrote {args.results}")


if __name__ == "__main__":
    main()
