"""A webhook sender on its own over a real store, and HTTP receivers on 127.0.0.1 whose answers a
test controls: status, Location, and a gate that holds every request until it opens."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiohttp.abc import AbstractResolver
from sqlalchemy import select

from omnirelay.core.reports import WebhookDraft
from omnirelay.core.timefmt import utcnow
from omnirelay.engine.webhooks import WebhookSender
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account
from omnirelay.store.tables import webhooks
from omnirelay.store.transitions import enqueue_webhooks
from tests.support import create_account, make_settings
from tests.templates import premigrate

FAST_RETRIES = {"backoff_base": 0.2, "backoff_factor": 1.0, "jitter": 0.0}
PRODUCTION_KEY = "a-production-secret-key-for-tests-only"


@dataclass
class Receiver:
    """Answers `statuses` in turn (the last one from then on), with `location` on a 3xx. With
    `gate`, each request waits until the gate opens; `open_now` counts those waiting."""

    statuses: list[int] = field(default_factory=lambda: [200])
    location: str | None = None
    gate: threading.Event | None = None
    paths: list[str] = field(default_factory=list)
    open_now: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.open_now += 1
                if receiver.gate is not None and not receiver.gate.wait(60):
                    raise AssertionError("the test never opened the receiver's gate")
                with receiver.lock:
                    receiver.open_now -= 1
                    status = receiver.statuses[min(len(receiver.paths),
                                                   len(receiver.statuses) - 1)]
                    receiver.paths.append(self.path)
                self.send_response(status)
                if 300 <= status < 400 and receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self) -> int:
        with self.lock:
            return len(self.paths)

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Outbox:
    runtime: Runtime
    account: Account
    sender: WebhookSender
    stopping: asyncio.Event
    task: asyncio.Task[None]

    def request_stop(self) -> None:
        self.stopping.set()
        self.sender.wake.set()

    async def stopped(self) -> None:
        self.request_stop()
        await asyncio.wait_for(asyncio.shield(self.task), 30)

    async def queue(self, *urls: str) -> None:
        now = utcnow()
        drafts = [(self.account.id, f"o{i}-{now.timestamp()}",
                   WebhookDraft(url, "dlr", b'{"status":"DELIVRD"}')) for i, url in enumerate(urls)]
        await self.runtime.db.write(lambda conn: enqueue_webhooks(conn, drafts, now))
        self.sender.wake.set()

    async def rows(self) -> list[dict[str, Any]]:
        def work(conn: Any) -> list[dict[str, Any]]:
            return [dict(r) for r in conn.execute(
                select(webhooks.c.id, webhooks.c.url, webhooks.c.state, webhooks.c.tries,
                       webhooks.c.last_error, webhooks.c.lease_until).order_by(webhooks.c.id)).mappings()]

        return await self.runtime.db.read(work)

    async def settled(self, timeout: float = 30) -> list[dict[str, Any]]:
        """The rows once none is pending any more (each delivered or dead)."""
        return await eventually(self.rows, lambda rows: all(r["state"] != "pending"
                                                            for r in rows), timeout)


async def eventually(fetch: Callable[[], Awaitable[Any]], good: Callable[[Any], bool],
                     timeout: float = 30) -> Any:
    """Poll until `good(await fetch())`; fail with the last value when it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if good(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s; last: {value!r}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def outbox(database_url: str, *, production: bool = False,
                 resolver: AbstractResolver | None = None, **webhook_settings: Any
                 ) -> AsyncIterator[Outbox]:
    overrides: dict[str, Any] = {"webhooks": {**FAST_RETRIES, **webhook_settings}}
    if production:
        overrides.update(mode="production", secret_key=PRODUCTION_KEY)
    settings = make_settings(database_url, **overrides)
    premigrate(database_url)
    runtime = Runtime(settings)
    runtime.migrate()
    account = await create_account(runtime)
    sender = WebhookSender(runtime.store, runtime.accounts, settings.webhooks, asyncio.Event(),
                           runtime.signers, runtime.metrics, production=settings.is_production,
                           resolver=resolver)
    stopping = asyncio.Event()
    task = asyncio.get_running_loop().create_task(sender.run(stopping))
    box = Outbox(runtime, account, sender, stopping, task)
    try:
        yield box
    finally:
        await box.stopped()
        runtime.close()
