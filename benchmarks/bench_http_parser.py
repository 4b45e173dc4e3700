"""What the HTTP server's request parsing costs: uvicorn's stock httptools protocol, the bounded
one `serve` uses (omnirelay.server), and h11 with its own head limit, under the same app.

Each variant serves the real gateway app (SQLite in a temporary directory, no workers) in a
child process on 127.0.0.1; keep-alive clients send requests that need no database
(GET /v1/omnimessage/x/status with a wrong password: a 401 from the lean fast path), so what
differs is the protocol. Reported per variant: requests/s and the server process's CPU time
per request (user + system, from /proc), which a busy machine disturbs less than wall time.

    python benchmarks/bench_http_parser.py                  # 20000 requests, 16 connections, 3 rounds
    python benchmarks/bench_http_parser.py --n 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = ("stock-httptools", "bounded-httptools", "h11")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(variant: str, port: int, workdir: str) -> None:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from omnirelay.app import create_app
    from omnirelay.config import load_settings
    from omnirelay.runtime import Runtime
    from omnirelay.server import uvicorn_config

    settings = load_settings(None, environ={}, overrides={
        "database_url": f"sqlite:///{workdir}/omnirelay.db", "log_level": "warning"})
    runtime = Runtime(settings)
    runtime.migrate()
    app = create_app(runtime, workers=False)
    config = uvicorn_config(app, settings.server, host="127.0.0.1", port=port,
                            refusal=app.refusal, log_level="warning", access_log=False,
                            loop="uvloop")
    if variant == "stock-httptools":
        config.http = HttpToolsProtocol  # type: ignore[assignment]
    elif variant == "h11":
        config.http = "h11"
        config.h11_max_incomplete_event_size = settings.server.max_header_bytes
    uvicorn.Server(config).run()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client(port: int, requests: int, request: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(requests):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 401"):
            raise RuntimeError(f"unexpected answer {head[:40]!r} {body[:80]!r}")
    writer.close()


async def load(port: int, n: int, concurrency: int) -> float:
    auth = base64.b64encode(b"nobody:wrong").decode()
    request = (f"GET /v1/omnimessage/x/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"User-Agent: bench\r\nAccept: application/json\r\n"
               f"Authorization: Basic {auth}\r\n\r\n").encode()
    started = time.perf_counter()
    await asyncio.gather(*(client(port, n // concurrency, request) for _ in range(concurrency)))
    return time.perf_counter() - started


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start")


def run_variant(variant: str, args: argparse.Namespace) -> tuple[float, float]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="omnirelay-parser-") as workdir:
        process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(variant, port, workdir), daemon=True)
        process.start()
        try:
            wait_for(port)
            asyncio.run(load(port, 500, args.concurrency))  # warm-up
            assert process.pid is not None
            cpu_before = cpu_seconds(process.pid)
            elapsed = asyncio.run(load(port, args.n, args.concurrency))
            cpu = cpu_seconds(process.pid) - cpu_before
        finally:
            process.terminate()
            process.join(10)
    requests = args.n // args.concurrency * args.concurrency
    return requests / elapsed, cpu / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    for round_ in range(args.rounds):
        for variant in VARIANTS:  # interleaved, so that a busy spell hits every variant
            rate, cpu_us = run_variant(variant, args)
            results[variant].append((rate, cpu_us))
            print(f"round {round_ + 1} {variant:18} {rate:8.0f} req/s  {cpu_us:6.1f} µs CPU/request")
    print(f"\nmedians over {args.rounds} rounds, n={args.n}, concurrency={args.concurrency}, "
          f"cpus={os.cpu_count()}")
    base: Any = None
    for variant in VARIANTS:
        rate = statistics.median(r for r, _ in results[variant])
        cpu_us = statistics.median(c for _, c in results[variant])
        base = base or (rate, cpu_us)
        print(f"  {variant:18} {rate:8.0f} req/s ({rate / base[0] - 1:+.1%})  "
              f"{cpu_us:6.1f} µs CPU/request ({cpu_us / base[1] - 1:+.1%})")


if __name__ == "__main__":
    main()
