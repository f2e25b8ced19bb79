"""W1-W3 on Restate: the same counter (bench.agents.BenchCounter) as a virtual object.

    PYTHONPATH=REPO  RESTATE_PYTHON -m bench.restate_bench run --server PATH/restate-server
    PYTHONPATH=REPO  RESTATE_PYTHON -m bench.restate_bench serve PORT   (the SDK service)

Runs in whatever interpreter has the `restate` SDK (restate-sdk) and
`hypercorn` (usually a throwaway venv, never the project's). `run` starts a
restate-server in a temporary base directory, the SDK service (hypercorn, an
ASGI app) beside it, registers the service, drives the workloads over the
ingress with plain HTTP/1.1 keep-alive connections, prints one JSON object of
figures on its last stdout line, and stops both.

The object's state is the counter's fields (its __dict__) under one state key;
each call loads them, runs BenchCounter.increment and stores them back, so the
logic is the very method the other systems run. Restate journals every call
(its own log and RocksDB): there is no journal-off mode.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

INGRESS = 28080
ADMIN = 29070
NODE = 25122
SERVICE = 29080


def build_app() -> Any:
    import restate

    from bench.agents import BenchCounter

    counter = restate.VirtualObject("BenchCounter")

    async def increment(ctx: restate.ObjectContext) -> int:
        state = await ctx.get("agent")
        obj = BenchCounter.__new__(BenchCounter)
        if state is None:
            obj.__init__(ctx.key())  # type: ignore[misc]
        else:
            obj.__dict__.update(state)
        result = obj.increment()
        ctx.set("agent", dict(obj.__dict__))
        return result

    # The SDK reads the annotations; under `from __future__ import annotations`
    # they are strings naming this function's locals, so give it the objects.
    increment.__annotations__ = {"ctx": restate.ObjectContext, "return": int}
    counter.handler()(increment)
    return restate.app(services=[counter])


def serve(port: int) -> None:
    import hypercorn.asyncio
    import hypercorn.config

    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    config.accesslog = None
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await hypercorn.asyncio.serve(build_app(), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())


# -- the driver -------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def _post(conn: http.client.HTTPConnection, path: str) -> Any:
    conn.request("POST", path, body=b"")
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"POST {path}: {resp.status} {body[:200]!r}")
    return json.loads(body) if body else None


async def _worker(path: str, calls: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", INGRESS)
    req = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n".encode()
    for _ in range(calls):
        writer.write(req)
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"POST {path}: {status!r}")
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
    writer.close()


async def _w2(agents: int, calls: int) -> float:
    # One keep-alive connection per object: calls to one key run one at a time anyway.
    per = calls // agents
    t = time.perf_counter()
    await asyncio.gather(*(_worker(f"/BenchCounter/w2-{i}/increment", per) for i in range(agents)))
    return per * agents / (time.perf_counter() - t)


def run(server_bin: str, only: set[str], w1_calls: int, w2_agents: int, w2_calls: int,
        w3_count: int) -> dict[str, Any]:
    base = tempfile.mkdtemp(prefix="restate-bench-")
    env = {**os.environ, "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{INGRESS}",
           "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{ADMIN}",
           "RESTATE_BIND_ADDRESS": f"127.0.0.1:{NODE}", "RESTATE_LOG_FILTER": "warn",
           "RESTATE_DISABLE_TELEMETRY": "true"}
    log = open(os.path.join(base, "server.log"), "wb")
    t0 = time.perf_counter()
    server = subprocess.Popen([server_bin, "--base-dir", base], env=env, stdout=log, stderr=log,
                              start_new_session=True)
    service = subprocess.Popen([sys.executable, "-m", "bench.restate_bench", "serve", str(SERVICE)],
                               stdout=log, stderr=log, start_new_session=True)
    figures: dict[str, Any] = {}
    try:
        _wait_port(ADMIN, server)
        _wait_port(INGRESS, server)
        _wait_port(SERVICE, service)
        out = subprocess.run([server_bin, "--version"], capture_output=True, text=True)
        figures["version"] = out.stdout.strip()
        body = json.dumps({"uri": f"http://127.0.0.1:{SERVICE}", "force": True}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{ADMIN}/deployments", data=body,
                                     headers={"content-type": "application/json"})
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(req, timeout=10).read()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", INGRESS, timeout=60)
        deadline = time.monotonic() + 30
        while True:  # the registration reaches the ingress a moment later
            try:
                _post(conn, "/BenchCounter/warmup/increment")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", INGRESS, timeout=60)
                time.sleep(0.2)
        figures["ready_s"] = time.perf_counter() - t0
        if "W1" in only:
            _post(conn, "/BenchCounter/w1/increment")
            lat = []
            for _ in range(w1_calls):
                t = time.perf_counter()
                _post(conn, "/BenchCounter/w1/increment")
                lat.append(time.perf_counter() - t)
            figures["w1_p50_us"] = statistics.median(lat) * 1e6
            figures["w1_p99_us"] = _quantile(lat, 0.99) * 1e6
        if "W2" in only:
            for i in range(w2_agents):
                _post(conn, f"/BenchCounter/w2-{i}/increment")
            figures["w2_calls_s"] = asyncio.run(_w2(w2_agents, w2_calls))
            figures["w2_note"] = (f"{w2_agents} objects, {w2_calls} calls, one HTTP/1.1 "
                                  "connection per object")
        if "W3" in only:
            times = []
            for i in range(w3_count):
                t = time.perf_counter()
                _post(conn, f"/BenchCounter/w3-{i}/increment")
                times.append(time.perf_counter() - t)
            figures["w3_median_ms"] = statistics.median(times) * 1e3
            figures["w3_p90_ms"] = _quantile(times, 0.9) * 1e3
        conn.close()
    finally:
        for proc in (service, server):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in (service, server):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)
    return figures


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.restate_bench")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    r = sub.add_parser("run")
    r.add_argument("--server", required=True, help="the restate-server binary")
    r.add_argument("--only", default="W1,W2,W3")
    r.add_argument("--w1-calls", type=int, default=2000)
    r.add_argument("--w2-agents", type=int, default=100)
    r.add_argument("--w2-calls", type=int, default=20000)
    r.add_argument("--w3-count", type=int, default=200)
    a = p.parse_args(argv)
    if a.cmd == "serve":
        serve(a.port)
        return
    figures = run(a.server, set(a.only.upper().split(",")), a.w1_calls, a.w2_agents, a.w2_calls,
                  a.w3_count)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
