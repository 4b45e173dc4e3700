"""End-to-end benchmark of the gateway, on loopback.

Starts `omnirelay serve` as a subprocess (SQLite or PostgreSQL, sandbox upstreams), a local webhook
receiver, and sends N omnimessages as single requests at concurrency C, then as bulk requests.
Prints accepted per second, p50/p99 latency, end-to-end delivered-and-reported per second (every
delivery report received) and the gateway's peak memory.

    python benchmarks/bench_gateway.py --db sqlite --n 20000 --concurrency 16
    python benchmarks/bench_gateway.py --db postgres --n 20000
    python benchmarks/bench_gateway.py --db sqlite --scheduled 1000000   # memory with a backlog

The load generator and the receiver are minimal HTTP/1.1 over asyncio streams so that they cost
little CPU next to the gateway on a 2-core machine. Everything binds 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("OMNIRELAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Counts delivery reports; a minimal HTTP/1.1 server answering 200 with keep-alive."""

    def __init__(self) -> None:
        self.delivered: set[str] = set()
        self.reports = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.port = free_port()
        self.target = 0
        self.done = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, backlog=1024)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.CancelledError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                self.reports += 1
                report = json.loads(body)
                if report.get("status") == "DELIVRD":
                    self.delivered.add(report["omnimessage_id"])
                    self.last_at = time.perf_counter()
                    if len(self.delivered) >= self.target > 0:
                        self.done.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, auth: str) -> None:
        self.port = port
        self.auth = auth

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {self.auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def message(i: int) -> dict[str, Any]:
    # Every message is meant to be delivered: the last four digits are never the sandbox's
    # 998x/999x (the three before the trailing 0 stay below 900), and the last three never the
    # SMSC simulator's 992-999.
    return {"to": f"+3725{(i // 900) % 1000:03d}{i % 900:03d}0",
            "messages": [{"channel": "sms", "text": f"code {i}"}]}


async def run_single(port: int, auth: str, n: int, concurrency: int) -> tuple[float, list[float], list[str]]:
    latencies: list[float] = []
    ids: list[str] = []
    counter = iter(range(n))

    async def worker() -> None:
        client = Client(port, auth)
        await client.connect()
        for i in counter:
            body = json.dumps(message(i)).encode()
            started = time.perf_counter()
            status, answer = await client.post("/v1/omnimessage", body)
            latencies.append(time.perf_counter() - started)
            if status != 201:
                raise RuntimeError(f"HTTP {status}: {answer[:200]!r}")
            ids.append(json.loads(answer)["omnimessage_id"])
        client.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, ids


async def run_bulk(port: int, auth: str, n: int, concurrency: int, size: int = 1000,
                   extra: dict[str, Any] | None = None) -> tuple[float, list[str]]:
    ids: list[str] = []
    batches = iter(range(0, n, size))

    async def worker() -> None:
        client = Client(port, auth)
        await client.connect()
        for start in batches:
            items = [{**message(i), **(extra or {})} for i in range(start, min(n, start + size))]
            status, answer = await client.post("/v1/omnimessages", json.dumps({"messages": items}).encode())
            if status != 201:
                raise RuntimeError(f"HTTP {status}: {answer[:200]!r}")
            ids.extend(m["omnimessage_id"] for m in json.loads(answer)["messages"])
        client.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, ids


def prepare_database(kind: str, workdir: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{workdir}/bench.db", None
    schema = "bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES else "?"
    return f"{POSTGRES}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(schema: str | None) -> None:
    if schema:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def omnirelay(config: Path, *args: str, **kwargs: Any) -> Any:
    return subprocess.run([sys.executable, "-m", "omnirelay.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, check=True, **kwargs)


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="omnirelay-bench-"))
    database_url, schema = prepare_database(args.db, workdir)
    receiver = Receiver()
    await receiver.start()
    port = free_port()
    config = workdir / "omnirelay.toml"
    config.write_text(
        f'database_url = "{database_url}"\nlog_level = "warning"\nport = {port}\n'
        f"[sandbox]\ndelay_ms = {args.sandbox_delay_ms}\n"
        f"[engine]\nbatch_size = {args.batch_size}\n")
    smsc = None
    if args.smpp:
        smsc_port = free_port()
        smsc = subprocess.Popen([sys.executable, "-m", "omnirelay.cli", "smsc", "--port", str(smsc_port),
                                 "--control-port", "0", "--receipt-delay", "0.01"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with config.open("a") as out:
            out.write(f'[channels]\nsms = "smpp"\n[providers.smpp]\nconnectors = [{{name = "sim", '
                      f'host = "127.0.0.1", port = {smsc_port}, system_id = "bench", window = 64}}]\n')
        await asyncio.sleep(1.5)
    account = json.loads(omnirelay(config, "account", "create", "bench", "--json", "--dlr-url",
                                   f"http://127.0.0.1:{receiver.port}/dlr").stdout)
    auth = base64.b64encode(f"{account['api_username']}:{account['api_password']}".encode()).decode()
    log = open(workdir / "gateway.log", "wb")  # noqa: SIM115
    command = [sys.executable, "-m", "omnirelay.cli", "serve", "--config", str(config)]
    if args.api_only or args.worker_processes:
        command.append("--no-workers")
    if args.api_processes > 1 or os.environ.get("BENCH_REUSE_PORT"):
        command.append("--reuse-port")
    gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    more_api = [subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                for _ in range(args.api_processes - 1)]
    workers = [subprocess.Popen([sys.executable, "-m", "omnirelay.cli", "worker", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT)
               for _ in range(args.worker_processes)]
    try:
        for _ in range(300):
            try:
                client = Client(port, auth)
                await client.connect()
                client.writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        print(f"omnirelay benchmark: db={args.db} n={args.n} concurrency={args.concurrency} "
              f"sandbox_delay_ms={args.sandbox_delay_ms} api_processes={args.api_processes} "
              f"worker_processes={args.worker_processes} smpp={args.smpp} "
              f"cpus={os.cpu_count()}")
        if args.scheduled:
            await scheduled_memory(port, auth, args, gateway.pid)
            return
        # warm-up: the first requests pay for imports and caches
        await run_single(port, auth, 200, 4)
        receiver.delivered.clear()
        receiver.reports = 0

        receiver.target = args.n
        receiver.done.clear()
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(["py-spy", "record", "--pid", str(gateway.pid), "--duration",
                                         "10", "--gil", "-f", "raw", "-o", args.profile],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.perf_counter()
        elapsed, latencies, _ = await run_single(port, auth, args.n, args.concurrency)
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        print(f"single requests : {args.n / elapsed:8.0f} accepted/s   "
              f"p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
        if args.api_only:
            elapsed, _ = await run_bulk(port, auth, args.n, max(1, min(4, args.concurrency)))
            print(f"bulk requests   : {args.n / elapsed:8.0f} accepted/s   (1000 per request)")
            return
        await asyncio.wait_for(receiver.done.wait(), timeout=args.timeout)
        e2e = receiver.last_at - started
        print(f"end to end      : {args.n / e2e:8.0f} delivered-and-reported/s "
              f"({args.n} in {e2e:.1f} s, every report received)")

        receiver.delivered.clear()
        receiver.target = args.n
        receiver.done.clear()
        started = time.perf_counter()
        elapsed, _ids = await run_bulk(port, auth, args.n, max(1, min(4, args.concurrency)))
        print(f"bulk requests   : {args.n / elapsed:8.0f} accepted/s   (1000 per request, 4 connections)")
        await asyncio.wait_for(receiver.done.wait(), timeout=args.timeout)
        e2e = receiver.last_at - started
        print(f"bulk end to end : {args.n / e2e:8.0f} delivered-and-reported/s")
        print(f"gateway peak RSS: {peak_rss_mb(gateway.pid):8.0f} MB")
        if profiler is not None:
            profiler.wait(30)
    finally:
        for worker in workers + more_api:
            worker.send_signal(signal.SIGTERM)
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(20)
        except subprocess.TimeoutExpired:
            gateway.kill()
        for worker in workers + more_api:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        if smsc is not None:
            smsc.terminate()
            smsc.wait(10)
        log.close()
        receiver.server.close()
        if args.keep:
            print(f"kept {workdir} and schema {schema}")
        else:
            drop_schema(schema)
            shutil.rmtree(workdir, ignore_errors=True)


async def scheduled_memory(port: int, auth: str, args: argparse.Namespace, pid: int) -> None:
    """Fill the store with scheduled messages and watch the gateway's memory while it waits."""
    extra = {"time_to_send": "2099-01-01T00:00:00Z"}
    samples: list[tuple[int, float]] = []
    done = 0
    chunk = 100_000
    started = time.perf_counter()
    while done < args.scheduled:
        step = min(chunk, args.scheduled - done)
        await run_bulk(port, auth, step, 4, extra=extra)
        done += step
        samples.append((done, rss_mb(pid)))
        print(f"  {done:>9} scheduled   gateway RSS {samples[-1][1]:6.0f} MB")
    rate = args.scheduled / (time.perf_counter() - started)
    await asyncio.sleep(5)
    print(f"scheduled {args.scheduled} at {rate:.0f}/s; RSS after 5 s idle: {rss_mb(pid):.0f} MB; "
          f"peak {peak_rss_mb(pid):.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sandbox-delay-ms", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--scheduled", type=int, default=0)
    parser.add_argument("--worker-processes", type=int, default=0,
                        help="run the workers as this many separate `omnirelay worker` processes "
                             "(PostgreSQL); the serve process then only serves the API")
    parser.add_argument("--api-processes", type=int, default=1,
                        help="serve processes sharing the port with SO_REUSEPORT (PostgreSQL)")
    parser.add_argument("--smpp", action="store_true",
                        help="send SMS over SMPP to an `omnirelay smsc` simulator instead of the sandbox")
    parser.add_argument("--keep", action="store_true", help="keep the database and the log")
    parser.add_argument("--api-only", action="store_true",
                        help="measure acceptance alone: the gateway runs no workers")
    parser.add_argument("--profile", help="write a py-spy profile (speedscope JSON) of the gateway here")
    asyncio.run(main(parser.parse_args()))
