"""Open-loop latency benchmark of the accept path (POST /v1/omnimessage), on loopback.

    python benchmarks/bench_open_loop.py [--rate 1000] [--seconds 10] [--warmup 2] \
        [--db sqlite|postgres] [--smpp] [--connections 256] [--timeout 10]

Target: p99 accept latency < 50 ms at 1,000 requests/s offered.

Open loop: request i is due at t0 + i/rate and is started then whether or not earlier requests
have been answered; its latency runs from that scheduled time to its answer, so time spent queued
(in the client's connection pool, the gateway's accept backlog or its event loop) counts and a slow
gateway cannot slow the offered load down (no coordinated omission). Closed-loop clients, which send
the next request once the previous one is answered, hide exactly that queueing.

The script starts everything itself in a fresh temporary directory: optionally the SMSC simulator
(`--smpp`, else the sandbox serves SMS), `omnirelay account create`, then `omnirelay serve`, and waits
for `GET /health/ready`. SQLite by default; `--db postgres` uses $OMNIRELAY_BENCH_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/test) in a schema it creates and drops. The client is
this process (asyncio and aiohttp over a pool of keep-alive connections); the gateway is another.
The warm-up runs at the same rate right before the measured window, on the same schedule, and is
not counted. Everything binds 127.0.0.1, the run is bounded in requests and time, and every process
is stopped at the end, on errors and on Ctrl-C too.

Prints offered and achieved send rate, how far the client fell behind its schedule, completions,
errors by status, latency percentiles, the gateway's (and the client's) CPU, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
OMNIRELAY = str(ROOT / ".venv" / "bin" / "omnirelay")
POSTGRES = os.environ.get("OMNIRELAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_P99_MS = 50.0
TARGET_RATE = 1000.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def body(i: int) -> bytes:
    # +372 5551 xxx0: valid Estonian mobile numbers (libphonenumber refuses nine national digits,
    # so not +3725551xxxx0). xxx stays below 900 to keep clear of the sandbox's 9990 (never
    # reported); the trailing 0 clears every failure suffix of the sandbox and of the simulator.
    return json.dumps({"to": f"+3725551{i % 900:03d}0",
                       "messages": [{"channel": "sms", "text": f"Your code is {i % 1000000:06d}"}]}).encode()


# --- the processes ------------------------------------------------------------------------------

class Gateway:
    """The SMSC simulator (optional), the database and `omnirelay serve`; stopped on exit."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="omnirelay-open-loop-"))
        self.config = self.workdir / "omnirelay.toml"
        self.port = free_port()
        self.schema: str | None = None
        self.smsc: subprocess.Popen[bytes] | None = None
        self.serve: subprocess.Popen[bytes] | None = None
        self.auth = ""
        self.log_path = self.workdir / "gateway.log"

    def __enter__(self) -> Gateway:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _start(self) -> None:
        args = self.args
        if args.db == "sqlite":
            database_url = f"sqlite:///{self.workdir}/bench.db"
        else:
            import psycopg

            self.schema = "bench_open_loop_" + uuid.uuid4().hex[:8]
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")
            separator = "&" if "?" in POSTGRES else "?"
            database_url = f"{POSTGRES}{separator}options=-csearch_path%3D{self.schema}"
        text = (f'database_url = "{database_url}"\nhost = "127.0.0.1"\nport = {self.port}\n'
                f'log_level = "warning"\n[sandbox]\ndelay_ms = {args.sandbox_delay_ms}\n')
        if args.smpp:
            smsc_port = free_port()
            smsc_log = (self.workdir / "smsc.log").open("wb")
            self.smsc = subprocess.Popen(
                [OMNIRELAY, "smsc", "--host", "127.0.0.1", "--port", str(smsc_port), "--control-port", "0"],
                stdout=smsc_log, stderr=subprocess.STDOUT)
            smsc_log.close()
            self._wait_for_port(smsc_port, self.smsc, "the SMSC simulator", self.workdir / "smsc.log")
            text += (f'[channels]\nsms = "smpp"\n[providers.smpp]\nconnectors = [{{name = "sim", '
                     f'host = "127.0.0.1", port = {smsc_port}, system_id = "bench", window = 64}}]\n')
        self.config.write_text(text)
        created = subprocess.run(
            [OMNIRELAY, "account", "create", "bench", "--json", "--config", str(self.config)],
            capture_output=True, text=True, timeout=120)
        if created.returncode != 0:
            raise RuntimeError(f"account create failed ({created.returncode}): {created.stderr.strip()}")
        account = json.loads(created.stdout)
        self.auth = "Basic " + base64.b64encode(
            f"{account['api_username']}:{account['api_password']}".encode()).decode()
        log = self.log_path.open("wb")
        self.serve = subprocess.Popen(
            [OMNIRELAY, "serve", "--config", str(self.config), "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_until_ready()

    def _fail(self, what: str, log: Path) -> RuntimeError:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        return RuntimeError(f"{what}\n--- {log.name} (tail) ---\n{tail}")

    def _wait_for_port(self, port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
        deadline = time.monotonic() + self.args.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise self._fail(f"{name} exited with {process.returncode}", log)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            time.sleep(0.1)
        raise self._fail(f"{name} did not listen on {port} within {self.args.startup_timeout:g} s", log)

    def _wait_until_ready(self) -> None:
        """GET /health/ready until 200; with --smpp also until the connector is bound (readiness
        does not wait for upstream links)."""
        assert self.serve is not None
        deadline = time.monotonic() + self.args.startup_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise self._fail(f"omnirelay serve exited with {self.serve.returncode}", self.log_path)
            try:
                ready_url = f"http://127.0.0.1:{self.port}/health/ready"
                with urllib.request.urlopen(ready_url, timeout=5) as answer:
                    report = json.loads(answer.read())
                states = [c.get("state") for p in report.get("connectors", {}).values() for c in p.values()]
                if all(state == "bound" for state in states):
                    return
                last = f"200, connectors {states}"
            except urllib.error.HTTPError as error:
                last = f"{error.code} {error.read()[:300]!r}"
            except (OSError, ValueError) as error:
                last = repr(error)
            time.sleep(0.1)
        raise self._fail(f"gateway not ready within {self.args.startup_timeout:g} s (last: {last})",
                         self.log_path)

    def stop(self) -> None:
        for process in (self.serve, self.smsc):  # the gateway first, so it sees no SMSC vanish
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self.schema is not None:
            import psycopg

            schema, self.schema = self.schema, None
            try:
                with psycopg.connect(POSTGRES, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            except psycopg.Error as error:
                print(f"could not drop schema {schema}: {error}", file=sys.stderr)
        if self.args.keep:
            print(f"kept {self.workdir}", file=sys.stderr)
        else:
            for path in sorted(self.workdir.rglob("*"), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir() if path.is_dir() else path.unlink()
            with contextlib.suppress(OSError):
                self.workdir.rmdir()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []


# --- the load -----------------------------------------------------------------------------------

@dataclass
class Run:
    n: int
    warmup: int
    due: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    pool_full: int = 0  # measured requests started while every connection was busy
    window_start: float = 0.0
    gateway_cpu_start: float = 0.0
    client_cpu_start: float = 0.0

    def __post_init__(self) -> None:
        self.due = [0.0] * self.n
        self.started = [0.0] * self.n
        self.finished = [0.0] * self.n
        self.outcome = [""] * self.n


async def load(args: argparse.Namespace, port: int, auth: str, gateway_pid: int) -> dict[str, Any]:
    rate = args.rate
    warmup = round(args.warmup * rate)
    run = Run(n=warmup + round(args.seconds * rate), warmup=warmup)
    url = f"http://127.0.0.1:{port}/v1/omnimessage"
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    # Below uvicorn's 5 s keep-alive, so the client never reuses a connection the server is closing.
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=args.connections,
                                     keepalive_timeout=4, use_dns_cache=True)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    pending: set[asyncio.Task[None]] = set()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                     skip_auto_headers=("User-Agent",)) as session:

        async def request(i: int) -> None:
            run.started[i] = time.perf_counter()
            if i >= run.warmup and run.in_flight >= args.connections:
                run.pool_full += 1
            run.in_flight += 1
            run.max_in_flight = max(run.max_in_flight, run.in_flight)
            try:
                async with session.post(url, data=body(i)) as answer:
                    await answer.read()
                    run.outcome[i] = str(answer.status)
            except TimeoutError:
                run.outcome[i] = "timeout"
            except (aiohttp.ClientError, OSError) as error:  # connection refused, reset, ...
                run.outcome[i] = type(error).__name__
            finally:
                run.finished[i] = time.perf_counter()
                run.in_flight -= 1

        t0 = time.perf_counter() + 0.05
        i = 0
        while i < run.n:
            now = time.perf_counter()
            due = t0 + i / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            while i < run.n and t0 + i / rate <= now:  # start everything that is due, catching up
                if i == run.warmup:
                    run.window_start = t0 + i / rate
                    run.gateway_cpu_start = cpu_seconds(gateway_pid)
                    run.client_cpu_start = own_cpu_seconds()
                run.due[i] = t0 + i / rate
                task = asyncio.create_task(request(i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
        scheduled_end = time.perf_counter()
        # Every request ends within --timeout of its start; this bound is only a safety net.
        if pending:
            _done, still = await asyncio.wait(set(pending), timeout=args.timeout + 5)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        window_end = time.perf_counter()
        gateway_cpu = cpu_seconds(gateway_pid) - run.gateway_cpu_start
        client_cpu = own_cpu_seconds() - run.client_cpu_start
    return summarise(args, run, scheduled_end, window_end, gateway_cpu, client_cpu)


def summarise(args: argparse.Namespace, run: Run, scheduled_end: float, window_end: float,
              gateway_cpu: float, client_cpu: float) -> dict[str, Any]:
    measured = range(run.warmup, run.n)
    count = len(measured)
    outcomes = Counter(run.outcome[i] or "unfinished" for i in measured)
    ok = outcomes.pop("201", 0)
    # Every measured request counts, from its scheduled start to its answer, whatever the answer:
    # leaving errors and timeouts out would flatter the tail.
    latencies = sorted((run.finished[i] or window_end) - run.due[i] for i in measured)
    lags = sorted(run.started[i] - run.due[i] for i in measured)
    starts = [run.started[i] for i in measured]
    send_span = max(starts) - min(starts) if count > 1 else 0.0
    achieved = (count - 1) / send_span if send_span > 0 else float("nan")
    window = window_end - run.window_start
    completed = sum(1 for i in measured if run.outcome[i].isdigit())  # an HTTP answer, any status
    kept_schedule = achieved >= 0.99 * args.rate and percentile(lags, 0.99) <= 0.005 and run.pool_full == 0
    p99_ms = percentile(latencies, 0.99) * 1000
    errors = sum(outcomes.values())
    within = p99_ms < TARGET_P99_MS and errors == 0 and kept_schedule
    per_second: dict[int, list[float]] = {}  # is the tail spread evenly or a few stalls?
    for i in measured:
        per_second.setdefault(int(run.due[i] - run.window_start), []).append(
            (run.finished[i] or window_end) - run.due[i])
    return {
        "benchmark": "open_loop_accept",
        "db": args.db,
        "smsc": "smpp" if args.smpp else "sandbox",
        "offered_rate": args.rate,
        "achieved_send_rate": round(achieved, 1),
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "requests": count,
        "completed": completed,
        "accepted_201": ok,
        "errors": dict(sorted(outcomes.items())),
        "completion_rate": round(ok / window, 1) if window > 0 else None,
        "latency_ms": {name: round(percentile(latencies, q) * 1000, 2)
                       for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))}
        | {"max": round(latencies[-1] * 1000, 2) if latencies else None},
        "client_lag_ms": {"p50": round(percentile(lags, 0.5) * 1000, 2),
                          "p99": round(percentile(lags, 0.99) * 1000, 2),
                          "max": round(lags[-1] * 1000, 2) if lags else None},
        "client_kept_schedule": kept_schedule,
        "connections": args.connections,
        "max_in_flight": run.max_in_flight,
        "pool_full_starts": run.pool_full,
        "schedule_overrun_s": round(scheduled_end - (run.window_start + count / args.rate), 3),
        "window_s": round(window, 3),
        "gateway_cpu_percent": round(100 * gateway_cpu / window, 1) if window > 0 else None,
        "client_cpu_percent": round(100 * client_cpu / window, 1) if window > 0 else None,
        "cpus": os.cpu_count(),
        "loadavg_before": args.loadavg_before,
        "p99_ms_by_second": [round(percentile(sorted(v), 0.99) * 1000, 1)
                             for _, v in sorted(per_second.items())],
        "target": f"p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE:g} req/s offered, no errors",
        "within_latency_target": within,
        # only a run at the target rate (or above) can meet it
        "target_met": within if args.rate >= TARGET_RATE else None,
    }


def print_table(result: dict[str, Any], log_lines: list[str]) -> None:
    lat, lag = result["latency_ms"], result["client_lag_ms"]
    errors = ", ".join(f"{k}: {v}" for k, v in result["errors"].items()) or "none"
    if result["target_met"] is not None:
        verdict = "MET" if result["target_met"] else "NOT MET"
    else:
        verdict = (f"not evaluated at {result['offered_rate']:g} req/s (p99 < {TARGET_P99_MS:g} ms, "
                   f"no errors here: {'yes' if result['within_latency_target'] else 'no'})")
    rows = [
        ("database / SMS upstream", f"{result['db']} / {result['smsc']}"),
        ("offered rate", f"{result['offered_rate']:g} req/s for {result['seconds']:g} s "
                         f"(+ {result['warmup_seconds']:g} s warm-up, not counted)"),
        ("achieved send rate", f"{result['achieved_send_rate']:.1f} req/s"),
        ("client lag behind schedule",
         f"p50 {lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms, max {lag['max']:.2f} ms"),
        ("client kept schedule", "yes" if result["client_kept_schedule"] else
         "NO: the client fell behind; latencies include its own delay"),
        ("in flight", f"max {result['max_in_flight']} of {result['connections']} connections; "
                      f"{result['pool_full_starts']} starts found the pool full"),
        ("requests / completed / 201",
         f"{result['requests']} / {result['completed']} / {result['accepted_201']}"),
        ("errors", errors),
        ("accept throughput", f"{result['completion_rate']} 201/s over {result['window_s']:.2f} s"),
        ("latency p50 / p90", f"{lat['p50']:8.2f} ms {lat['p90']:8.2f} ms"),
        ("latency p99 / p99.9", f"{lat['p99']:8.2f} ms {lat['p99.9']:8.2f} ms"),
        ("latency max", f"{lat['max']:8.2f} ms"),
        ("p99 in each second", " ".join(f"{v:g}" for v in result["p99_ms_by_second"]) + " ms"),
        ("gateway CPU", f"{result['gateway_cpu_percent']}% of one core (API and workers, one process)"),
        ("client CPU", f"{result['client_cpu_percent']}% of one core"),
        ("machine", f"{result['cpus']} CPUs, load average before {result['loadavg_before']}"),
        ("target", f"{result['target']}: {verdict}"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    noisy = [line for line in log_lines if "WARNING" in line or "ERROR" in line or "Traceback" in line]
    if noisy:
        print(f"\n  gateway log: {len(noisy)} warning/error lines, the last ones:")
        for line in noisy[-5:]:
            print(f"    {line[:200]}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured window")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds at the same rate, not counted")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--smpp", action="store_true",
                        help="send SMS over SMPP to an `omnirelay smsc` simulator instead of the sandbox")
    parser.add_argument("--connections", type=int, default=256,
                        help="most keep-alive connections (and so requests in flight) at once")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds before a request counts as timed out")
    parser.add_argument("--sandbox-delay-ms", type=int, default=100, help="the sandbox's report delay")
    parser.add_argument("--startup-timeout", type=float, default=60)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and its logs")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.warmup < 0 or args.connections < 1:
        parser.error("--rate and --seconds must be positive, --warmup not negative, --connections ≥ 1")
    args.loadavg_before = " ".join(f"{x:.2f}" for x in os.getloadavg())

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # stop as on Ctrl-C: the Gateway's exit stops every process

    signal.signal(signal.SIGTERM, terminate)
    runner: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop  # the gateway runs on uvloop too when it is installed; a cheaper client

        runner = uvloop.run
    try:
        with Gateway(args) as gateway:
            assert gateway.serve is not None
            print(f"open-loop accept benchmark: {args.rate:g} req/s for {args.seconds:g} s after "
                  f"{args.warmup:g} s warm-up; db={args.db} smpp={args.smpp} port={gateway.port} "
                  f"gateway pid={gateway.serve.pid}", flush=True)
            coroutine = load(args, gateway.port, gateway.auth, gateway.serve.pid)
            result = runner(coroutine)
            log_lines = gateway.log_lines()
            result["gateway_log_warnings"] = sum(1 for line in log_lines
                                                 if "WARNING" in line or "ERROR" in line)
    except KeyboardInterrupt:
        print("interrupted; everything stopped", file=sys.stderr)
        sys.exit(130)
    print_table(result, log_lines)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
