"""Fake chat upstreams for end-to-end tests of the whole gateway.

The gateway under test (`tests.support.start_live_server`) runs in its own thread and event loop,
and the tests themselves are synchronous; so each fake upstream here runs a `FakeUpstream`
(tests.channels.support: a recording Starlette app under uvicorn on 127.0.0.1, port 0) in a
thread of its own. The answer functions reply the way the real APIs do.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from starlette.responses import Response

from tests.channels.support import FakeUpstream, Handler, Recorded, ok_json


class ThreadedUpstream:
    """A FakeUpstream serving from a background thread, answering with `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.fake = FakeUpstream()
        self.fake.handler = handler
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> ThreadedUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(15)
        return self

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.fake.stop(), self._loop).result(15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)
            self._loop.close()

    @property
    def url(self) -> str:
        return self.fake.url

    @property
    def requests(self) -> list[Recorded]:
        return list(self.fake.requests)


def graph_accepts(request: Recorded) -> Response:
    """Meta's Graph API: POST /{version}/{phone-number-id}/messages -> 200 with the wamid."""
    body = request.json()
    return ok_json({"messaging_product": "whatsapp",
                    "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                    "messages": [{"id": f"wamid.{body['biz_opaque_callback_data']}",
                                  "message_status": "accepted"}]})


class ViberTokens:
    """Viber's /pa/send_message: HTTP 200, status 0 and a fresh numeric message_token."""

    def __init__(self, first: int = 5741311803571721088) -> None:
        self._tokens = itertools.count(first)

    def __call__(self, _request: Recorded) -> Response:
        return ok_json({"status": 0, "status_message": "ok", "message_token": next(self._tokens),
                        "chat_hostname": "SN-CHAT-05_", "billing_status": 1})


def gateway_accepts(request: Recorded) -> Response:
    """Telegram Gateway's sendVerificationMessage: ok with a RequestStatus."""
    body: dict[str, Any] = request.json()
    return ok_json({"ok": True, "result": {
        "request_id": f"req-{body['payload']}", "phone_number": body["phone_number"].lstrip("+"),
        "request_cost": 0.01, "remaining_balance": 9.99,
        "delivery_status": {"status": "sent", "updated_at": 1700000000},
        "payload": body["payload"]}})
