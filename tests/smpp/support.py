"""Test doubles and helpers for the SMPP tests: a recording sink and a channel factory."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from omnirelay.channels.base import (
    InboundFragment,
    InboundMessage,
    OutboundMessage,
    SendResult,
    StatusReport,
)
from omnirelay.channels.smpp import SmppChannel, create_channel
from omnirelay.supervisor import Supervisor

_ids = itertools.count(1)


class RecordingSink:
    """The engine's side, in memory: records what the channel hands over."""

    def __init__(self) -> None:
        self.reports: list[StatusReport] = []
        self.supervisor = Supervisor()
        self.inbound: list[InboundMessage] = []
        self.fragments: list[InboundFragment] = []
        self.fail_next = 0
        self._changed = asyncio.Event()

    async def report_statuses(self, reports: Sequence[StatusReport]) -> None:
        self._maybe_fail()
        self.reports.extend(reports)
        self._changed.set()

    async def receive_inbound(self, messages: Sequence[InboundMessage]) -> None:
        self._maybe_fail()
        self.inbound.extend(messages)
        self._changed.set()

    async def receive_fragments(self, fragments: Sequence[InboundFragment]) -> None:
        self._maybe_fail()
        self.fragments.extend(fragments)
        self._changed.set()

    async def remember_subscriber(self, provider: str, phone: str, address: str) -> None:
        return None

    async def lookup_subscribers(self, provider: str, phones: Sequence[str]) -> dict[str, str]:
        return {}

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the store is down")

    async def wait_for(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def by_ref(self) -> dict[str, StatusReport]:
        return {report.provider_ref: report for report in self.reports if report.provider_ref}


def connector(name: str, port: int, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "name": name, "host": "127.0.0.1", "port": port, "system_id": "esme1", "password": "secret",
        "reconnect_min": 0.05, "reconnect_max": 0.2, "throttle_pause_min": 0.02, "throttle_pause_max": 0.1,
        "retry_after": 0.05, "response_timeout": 2.0, "bind_timeout": 2.0,
    }
    settings.update(overrides)
    return settings


def make_channel(*connectors: dict[str, Any], routes: list[dict[str, Any]] | None = None) -> SmppChannel:
    raw: dict[str, Any] = {"connectors": list(connectors)}
    if routes is not None:
        raw["routes"] = routes
    return create_channel(raw)


def sms(to: str, text: str = "Hello", sender: str = "Omni", **content: Any) -> OutboundMessage:
    number = next(_ids)
    return OutboundMessage(message_id=f"m{number}", omnimessage_id=f"o{number}", account_id=1,
                           channel="sms", to=to, sender=sender, content={"text": text, **content})


async def send_until_done(channel: SmppChannel, messages: Sequence[OutboundMessage],
                          within: float = 30.0) -> dict[str, SendResult]:
    """What the engine does: resend whatever came back with retry_after, until each has an outcome."""
    results: dict[str, SendResult] = {}
    todo = list(messages)
    async with asyncio.timeout(within):
        while todo:
            retry: list[OutboundMessage] = []
            by_id = {message.message_id: message for message in todo}
            for result in await channel.send(todo):
                if result.retry_after is not None:
                    retry.append(by_id[result.message_id])
                else:
                    results[result.message_id] = result
            todo = retry
            if todo:
                await asyncio.sleep(0.05)
    return results
