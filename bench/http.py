"""What HTTP costs the invocations (issue 14): W1 and W2 on golemd without
`http`, with `http` on and nobody using it, and with it watched (a
Prometheus-style scrape of /metrics every second and the dashboard's live
agents view open over SSE), run in turns so that drift hits each alike.
Wall time and CPU per call (daemon and workers, /proc/PID/schedstat).

    python -m bench.http [--rounds 3] [--w1-calls 2000] [--w2-calls 20000]
"""

from __future__ import annotations

import argparse
import http.client
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.systems import Server  # noqa: E402
from bench.workloads import w1, w2  # noqa: E402

VARIANTS = ("off", "on", "watched")


class Watcher:
    """A scrape of /metrics every second and one open live view, in threads."""

    def __init__(self, socket_path: str) -> None:
        from golemctl.client import Client

        with Client.connect(socket_path) as c:
            url = c.dashboard()["url"]
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        conn.request("GET", f"{parts.path}?{parts.query}")
        r = conn.getresponse()
        r.read()
        self.cookie = r.getheader("Set-Cookie", "").split(";")[0]
        conn.close()
        self.stop = threading.Event()
        self.scrapes = 0
        self.events = 0
        self.threads = [threading.Thread(target=self._scrape, daemon=True),
                        threading.Thread(target=self._live, daemon=True)]
        for t in self.threads:
            t.start()

    def _scrape(self) -> None:
        while not self.stop.wait(1.0):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            conn.request("GET", "/metrics")
            conn.getresponse().read()
            conn.close()
            self.scrapes += 1

    def _live(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.request("GET", "/api/live/agents", headers={"Cookie": self.cookie})
        r = conn.getresponse()
        assert r.status == 200, r.status
        while not self.stop.is_set():
            line = r.fp.readline()
            if not line:
                break
            if line.startswith(b"event: view"):
                self.events += 1
        conn.close()

    def close(self) -> None:
        self.stop.set()


def one(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    extra = () if variant == "off" else ("--http", "127.0.0.1:0")
    server = Server(f"golemd-http-{variant}", extra=extra)
    server.start()
    watcher = Watcher(server.socket) if variant == "watched" else None
    try:
        out = {**w1(server, args.w1_calls), **w2(server, calls=args.w2_calls)}
        if watcher is not None:
            out["scrapes"] = watcher.scrapes
            out["live_views"] = watcher.events
        return out
    finally:
        if watcher is not None:
            watcher.close()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--w1-calls", type=int, default=2000)
    p.add_argument("--w2-calls", type=int, default=20_000)
    args = p.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS:
            res = one(v, args)
            runs[v].append(res)
            print(f"round {r + 1} {v:8s} W1 p50 {res['w1_p50_us']:6.1f} us  W2 {res['w2_calls_s']:8.0f}/s  "
                  f"W2 CPU/call {res['w2_cpu_us']:6.1f} us (daemon {res['w2_cpu_server_us']:.1f})"
                  + (f"  scrapes {res['scrapes']}, live views {res['live_views']}" if v == "watched" else ""),
                  flush=True)
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"\n{platform.node()}, {cpu}, {time.strftime('%Y-%m-%d')}; medians of {args.rounds} rounds:")
    print("| http | W1 p50 (us) | W2 calls/s | W2 CPU/call (us) | of which daemon (us) |")
    print("|---|---:|---:|---:|---:|")
    for v in VARIANTS:
        med = {k: statistics.median(x[k] for x in runs[v]) for k in ("w1_p50_us", "w2_calls_s", "w2_cpu_us",
                                                                    "w2_cpu_server_us")}
        print(f"| {v} | {med['w1_p50_us']:.1f} | {med['w2_calls_s']:,.0f} | {med['w2_cpu_us']:.1f} | "
              f"{med['w2_cpu_server_us']:.1f} |")


if __name__ == "__main__":
    main()
