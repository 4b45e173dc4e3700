"""Per-request cost of the API routes, in-process: no network, no HTTP client, no server.

Builds the app on a temporary SQLite database (sandbox channels, no workers) and calls the ASGI app
directly through a minimal scope/receive/send loop, one request after another, so what is timed
is the middleware, routing and the handler with whatever it does.

    python benchmarks/bench_routes.py                     # 1000 requests per case, 3 rounds
    python benchmarks/bench_routes.py --n 3000 --rounds 5 --only send-401,status-404
    python benchmarks/bench_routes.py --access-log        # what the access log costs

Cases:
  send          POST /v1/omnimessage, 201: one group-committed SQLite write each (fsync)
  status        GET /v1/omnimessage/{id}/status of a stored omnimessage, 200: one read
  status-404    the status of an unknown id, 404: one read that finds nothing
  send-401      POST /v1/omnimessage with a wrong password, 401: no database work at all, so
                nearly all of it is the framework's per-request cost plus Basic auth
  twilio-401    GET /2010-04-01/Accounts/{Sid}/Messages/{Sid}.json with a wrong token, 401

The store dominates the first three; the 401 cases show what routing costs. Prints the median
µs per request over the rounds, and each round.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from omnirelay.app import create_app
from omnirelay.config import load_settings
from omnirelay.core import secrets
from omnirelay.core.timefmt import utcnow
from omnirelay.logs import configure
from omnirelay.runtime import Runtime

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

USERNAME, PASSWORD = "bench", "bench-password-0123456789"
SID, TOKEN = "ACbench", "bench-token-0123456789"
SEND_BODY = orjson.dumps({"to": "+37255512345", "messages": [{"channel": "sms", "text": "hello"}]})


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    method: str
    path: str
    expected: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""


def basic(user: str, password: str) -> tuple[bytes, bytes]:
    return b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def scope_for(case: Case) -> dict[str, Any]:
    headers = [(b"host", b"bench"), (b"content-length", str(len(case.body)).encode()),
               *case.headers]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": case.method, "scheme": "http", "path": case.path,
            "raw_path": case.path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}


async def request(app: ASGIApp, template: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """One request, the way a server drives the app: the body in one message, then nothing."""
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    # The app adds its own keys to the scope (route, path_params, ...), as it would for a server.
    await app(dict(template), receive, send)
    return status, b"".join(chunks)


async def run_case(app: ASGIApp, case: Case, n: int, rounds: int, warmup: int) -> list[float]:
    template = scope_for(case)
    for _ in range(warmup):
        await request(app, template, case.body)
    timings: list[float] = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter_ns()
        for _ in range(n):
            status, answer = await request(app, template, case.body)
            if status != case.expected:
                raise SystemExit(f"{case.name}: expected {case.expected}, got {status}: {answer!r}")
        timings.append((time.perf_counter_ns() - started) / n / 1000)
    return timings


async def build(directory: Path, access_log: bool = False) -> tuple[Runtime, ASGIApp]:
    settings = load_settings(None, environ={},
                             overrides={"database_url": f"sqlite:///{directory}/bench.db",
                                        "access_log": access_log})
    if access_log:  # the lines are written, as in production, to a file
        configure("info", "text", open(directory / "access.log", "w"))  # noqa: SIM115
    runtime = Runtime(settings)
    runtime.migrate()
    await runtime.store.create_account(
        name="bench", api_username=USERNAME, api_password=PASSWORD, twilio_account_sid=SID,
        twilio_auth_token=TOKEN, inbound_secret=secrets.new_password(), default_sender="Bench",
        now=utcnow())
    # No workers: nothing but the requests competes for the CPU or the database.
    await runtime.start(workers=False)
    return runtime, create_app(runtime, manage_runtime=False)


JSON = (b"content-type", b"application/json")
SEND = Case("send", "POST", "/v1/omnimessage", 201, (basic(USERNAME, PASSWORD), JSON), SEND_BODY)


def cases(stored_id: str) -> list[Case]:
    good, bad = basic(USERNAME, PASSWORD), basic(USERNAME, "wrong")
    message = f"/2010-04-01/Accounts/{SID}/Messages/SM{'0' * 32}.json"
    return [
        SEND,
        Case("status", "GET", f"/v1/omnimessage/{stored_id}/status", 200, (good,)),
        Case("status-404", "GET", "/v1/omnimessage/no-such-id/status", 404, (good,)),
        Case("send-401", "POST", "/v1/omnimessage", 401, (bad, JSON), SEND_BODY),
        Case("twilio-401", "GET", message, 401, (basic(SID, "wrong"),)),
    ]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-routes-") as tmp:
        runtime, app = await build(Path(tmp), args.access_log)
        try:
            status, answer = await request(app, scope_for(SEND), SEND.body)
            assert status == 201, answer
            stored_id = orjson.loads(answer)["omnimessage_id"]
            only = set(args.only.split(",")) if args.only else None
            print(f"python {sys.version.split()[0]}, fastapi {version('fastapi')}, "
                  f"starlette {version('starlette')}; n={args.n}, rounds={args.rounds}")
            print(f"{'case':<12} {'median µs/req':>14}   rounds")
            for case in cases(stored_id):
                if only is not None and case.name not in only:
                    continue
                timings = await run_case(app, case, args.n, args.rounds, args.warmup)
                rounds = " ".join(f"{t:.1f}" for t in timings)
                print(f"{case.name:<12} {statistics.median(timings):>14.1f}   {rounds}", flush=True)
        finally:
            await runtime.stop()
            runtime.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1000, help="requests per round and case")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per case")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests per case")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--access-log", action="store_true",
                        help="with access_log = true, the lines written to a file")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
