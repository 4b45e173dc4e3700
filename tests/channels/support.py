"""Real HTTP servers on 127.0.0.1 for the chat-provider tests, and a sink that records.

`LocalServer` runs a Starlette app under uvicorn in the test's own event loop, on a free port:
`FakeUpstream` (a catch-all app that records every request and answers with a handler the test
sets) plays Meta, Viber or Telegram; the channels' webhook routes are served the same way, so the
tests speak real HTTP both ways.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

from omnirelay.channels.base import InboundFragment, InboundMessage, StatusReport
from omnirelay.supervisor import Supervisor


class LocalServer:
    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.app = Starlette(routes=list(routes))
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
            lifespan="off"))
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            async with asyncio.timeout(10):
                await self._task


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Recorded], Response | Awaitable[Response]]


def ok_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


class FakeUpstream(LocalServer):
    """Records every request; answers with `handler` (a 500 until a test sets one)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.handler: Handler = lambda _r: ok_json({"unexpected": True}, 500)
        super().__init__([Route("/{path:path}", self._endpoint, methods=["GET", "POST", "DELETE"])])

    async def _endpoint(self, request: Request) -> Response:
        recorded = Recorded(request.method, request.url.path, dict(request.query_params),
                            {k.lower(): v for k, v in request.headers.items()},
                            await request.body())
        self.requests.append(recorded)
        answer = self.handler(recorded)
        if isinstance(answer, Response):
            return answer
        return await answer


def webhook_server(routes: list[BaseRoute], prefix: str) -> LocalServer:
    """The channel's routes mounted the way the app mounts them: under /webhooks/<provider>."""
    return LocalServer([Mount(prefix, app=Router(routes))])


@dataclass
class RecordingSink:
    reports: list[StatusReport] = field(default_factory=list)
    inbound: list[InboundMessage] = field(default_factory=list)
    fragments: list[InboundFragment] = field(default_factory=list)
    subscribers: dict[tuple[str, str], str] = field(default_factory=dict)
    lookups: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    supervisor: Supervisor = field(default_factory=Supervisor)

    async def report_statuses(self, reports: Sequence[StatusReport]) -> None:
        self.reports.extend(reports)

    async def receive_inbound(self, messages: Sequence[InboundMessage]) -> None:
        self.inbound.extend(messages)

    async def receive_fragments(self, fragments: Sequence[InboundFragment]) -> None:
        self.fragments.extend(fragments)

    async def remember_subscriber(self, provider: str, phone: str, address: str) -> None:
        self.subscribers[(provider, phone)] = address

    async def lookup_subscribers(self, provider: str, phones: Sequence[str]) -> dict[str, str]:
        self.lookups.append((provider, tuple(phones)))
        return {p: self.subscribers[(provider, p)] for p in phones
                if (provider, p) in self.subscribers}

    @property
    def empty(self) -> bool:
        return not (self.reports or self.inbound or self.fragments or self.subscribers)


def hmac_hex(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def dumps(payload: Any) -> bytes:
    """Compact JSON, as the providers send it; tests sign exactly these bytes."""
    return json.dumps(payload, separators=(",", ":")).encode()
