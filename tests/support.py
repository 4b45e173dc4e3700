"""Test support: real servers on 127.0.0.1 — the gateway in a thread, webhook receivers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import uvicorn

from omnirelay.app import create_app
from omnirelay.config import Settings, load_settings
from omnirelay.core import secrets
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime
from omnirelay.server import uvicorn_config
from omnirelay.store.queries import Account
from tests.templates import premigrate

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(database_url: str, **overrides: Any) -> Settings:
    raw: dict[str, Any] = {"database_url": database_url, "sandbox": {"delay_ms": 20},
                           "engine": {"poll_interval": 0.5}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return load_settings(None, environ={}, overrides=raw)


async def create_account(runtime: Runtime, name: str = "acme", **kwargs: Any) -> Account:
    return await runtime.store.create_account(
        name=name, api_username=kwargs.pop("api_username", f"user-{name}"),
        api_password=kwargs.pop("api_password", secrets.new_password()),
        twilio_account_sid=kwargs.pop("twilio_account_sid", secrets.new_account_sid()),
        twilio_auth_token=kwargs.pop("twilio_auth_token", secrets.new_auth_token()),
        inbound_secret=kwargs.pop("inbound_secret", secrets.new_password()),
        default_sender=kwargs.pop("default_sender", "Acme"), now=utcnow(), **kwargs)


@dataclass
class LiveServer:
    """The gateway (API and workers) running in its own thread and event loop."""

    runtime: Runtime
    port: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    server: uvicorn.Server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.runtime.close()


def start_live_server(settings: Settings, install: Callable[[Any, Runtime], None] | None = None
                      ) -> LiveServer:
    premigrate(settings.database_url)  # a new database gets the schema without Alembic's work
    runtime = Runtime(settings)
    runtime.migrate()
    app = create_app(runtime)
    if install is not None:
        install(app, runtime)
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, settings.server, host="127.0.0.1", port=port,
                                           refusal=app.refusal, log_level="warning",
                                           access_log=False, lifespan="on"))
    ready = threading.Event()
    holder: dict[str, asyncio.AbstractEventLoop] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        asyncio.set_event_loop(loop)
        ready.set()
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    return LiveServer(runtime, port, holder["loop"], thread, server)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A real HTTP server recording every POST; `fail_first` answers 500 to the first N."""

    fail_first: int = 0
    status: int = 200
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first
                    if not failing and receiver.status < 400:
                        receiver.received.append(Received(self.path, dict(self.headers.items()),
                                                          body))
                self.send_response(500 if failing else receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self.lock:
            raise AssertionError(f"expected {count} webhooks, got {len(self.received)}")


def wait_until(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def messente_signed(received: Received, secret: str) -> bool:
    """The report carries Messente's signature: HMAC-SHA256 of the body under `secret`."""
    import hashlib
    import hmac
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers.get("X-Messente-Signature", ""), expected)
