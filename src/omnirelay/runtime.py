"""The runtime: every long-lived part of a process, built from settings and wired explicitly.

`serve` runs the API and the workers on one Runtime; `worker` runs only the workers. Nothing is a
module-level global: tests build as many runtimes as they like.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omnirelay.accounts import AccountCache
from omnirelay.channels.base import Channel
from omnirelay.channels.sandbox import SandboxChannel
from omnirelay.config import CHANNELS, Settings
from omnirelay.core.reports import ReportContext, WebhookDraft, messente_dlr
from omnirelay.core.secrets import SecretBox
from omnirelay.core.timefmt import utcnow
from omnirelay.core.twilio.callbacks import sign_status_callback, status_callbacks
from omnirelay.engine.dispatcher import Dispatcher
from omnirelay.engine.maintenance import Maintenance
from omnirelay.engine.sink import EngineSink
from omnirelay.engine.wakeup import Wakeup, listen_postgres
from omnirelay.engine.webhooks import DEFAULT_SIGNERS, Signer, WebhookSender
from omnirelay.errors import ConfigError
from omnirelay.metrics import Metrics
from omnirelay.store import migrate
from omnirelay.store.batching import GroupCommitter
from omnirelay.store.database import Database
from omnirelay.store.queries import NewOmnimessage, Store

log = logging.getLogger(__name__)

# (the provider's [providers.NAME] table, the settings, NAME) -> the provider
ChannelFactory = Callable[[Mapping[str, Any], Settings, str], Channel]


def _sandbox(_table: Mapping[str, Any], settings: Settings, _name: str) -> Channel:
    return SandboxChannel(delay_ms=settings.sandbox.delay_ms,
                          send_delay_ms=settings.sandbox.send_delay_ms)


def _http_provider(create: Callable[..., Channel]) -> ChannelFactory:
    def factory(table: Mapping[str, Any], settings: Settings, name: str) -> Channel:
        # Only a configured public_url: the loopback default would hand upstreams an address
        # they cannot call back, and they would stay silent rather than fail.
        return create(table, name=name, public_url=settings.public_url)

    return factory


def provider_factories() -> dict[str, ChannelFactory]:
    """Provider type -> how to build it from its [providers.NAME] table. A table's `type`
    defaults to its NAME, so `[providers.whatsapp_cloud]` needs no `type`."""
    from omnirelay.channels import smpp, telegram, viber, whatsapp

    factories: dict[str, ChannelFactory] = {
        "sandbox": _sandbox,
        "smpp": lambda table, _settings, _name: smpp.create_channel(table),
    }
    for module in (whatsapp, viber, telegram):
        for kind in module.PROVIDERS:
            factories[kind] = _http_provider(module.create_channel)
    return factories


class Runtime:
    def __init__(self, settings: Settings, *, factories: dict[str, ChannelFactory] | None = None
                 ) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.box = SecretBox(settings.secret_key)
        self.report_builders: dict[str, Callable[[ReportContext], list[WebhookDraft]]] = {
            "messente": messente_dlr,
            "twilio": status_callbacks,
        }
        # Every process that records statuses builds and signs callbacks, API or worker alike.
        self.signers: dict[str, Signer] = {**DEFAULT_SIGNERS, "twilio": sign_status_callback}
        self.store = Store(self.db, self.box, self._build_reports)
        self.accounts = AccountCache(self.store)
        self.wakeup = Wakeup()
        self.metrics = Metrics()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.committer: GroupCommitter[NewOmnimessage] = GroupCommitter(self._insert)
        self.sink = EngineSink(self.store, self.wakeup, self.metrics)
        self.providers = self._build_providers(factories or provider_factories())
        self.channels: dict[str, Channel] = {
            name: self.providers[settings.provider_for(name)] for name in CHANNELS
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.dispatcher: Dispatcher | None = None
        self.webhook_sender: WebhookSender | None = None
        self.started_channels = False

    def _build_providers(self, factories: dict[str, ChannelFactory]) -> dict[str, Channel]:
        wanted = {"sandbox"} | {self.settings.provider_for(c) for c in CHANNELS}
        providers: dict[str, Channel] = {}
        for name in sorted(wanted):
            kind = self.settings.providers.get(name, {}).get("type", name)
            factory = factories.get(kind)
            if factory is None:
                raise ConfigError(f"provider {name!r}: unknown type {kind!r} "
                                  f"(known: {', '.join(sorted(factories))})")
            providers[name] = factory(self.settings.providers.get(name, {}), self.settings, name)
        return providers

    def _build_reports(self, ctx: ReportContext) -> list[WebhookDraft]:
        builder = self.report_builders.get(ctx.surface)
        return builder(ctx) if builder is not None else []

    async def _insert(self, items: Sequence[NewOmnimessage]) -> None:
        await self.store.insert_omnimessages(items, utcnow())

    # used by the API surfaces --------------------------------------------------------------

    async def accept(self, messages: Sequence[NewOmnimessage]) -> None:
        """Durably store accepted messages (group-committed) and wake the dispatcher."""
        if not messages:
            return
        await self.committer.submit(messages)
        self.wakeup.wake()
        for message in messages:
            self.metrics.accepted.labels(message.surface).inc()

    async def cancel(self, account_id: int, omnimessage_id: str) -> bool:
        return await self.store.cancel(account_id, omnimessage_id, utcnow())

    # lifecycle -----------------------------------------------------------------------------

    def migrate(self) -> None:
        migrate.upgrade(self.db)

    async def start(self, *, workers: bool = True) -> None:
        self._stopping.clear()
        for provider in self.providers.values():
            await provider.start(self.sink)
        self.started_channels = True
        if not workers:
            return
        loop = asyncio.get_running_loop()
        self.dispatcher = Dispatcher(self.store, self.channels, self.settings.engine,
                                     self.worker_id, self.wakeup.subscribe(), self.metrics)
        self.webhook_sender = WebhookSender(self.store, self.accounts, self.settings.webhooks,
                                            self.wakeup.subscribe(), self.signers, self.metrics)
        maintenance = Maintenance(self.store, self.sink, self.settings.engine, self.worker_id,
                                  self.wakeup)
        self._tasks = [
            loop.create_task(self.dispatcher.run(self._stopping), name="dispatcher"),
            loop.create_task(self.webhook_sender.run(self._stopping), name="webhooks"),
            loop.create_task(maintenance.run_expiry(self._stopping), name="expiry"),
            loop.create_task(maintenance.run_housekeeping(self._stopping), name="housekeeping"),
        ]
        if not self.db.is_sqlite:
            dsn = self.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
            self._tasks.append(loop.create_task(
                listen_postgres(dsn, self.wakeup, self._stopping), name="listen"))

    async def stop(self) -> None:
        self._stopping.set()
        self.wakeup.wake()
        for task in self._tasks:
            if task.get_name() == "listen":
                task.cancel()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
        if self.dispatcher is not None:
            await self.dispatcher.drain()
        if self.started_channels:
            for provider in self.providers.values():
                await provider.stop()
            self.started_channels = False
        if self._tasks:
            with_exceptions = [t for t in self._tasks if t.done() and not t.cancelled()
                               and t.exception() is not None]
            for task in with_exceptions:
                log.error("worker task %s ended with %r", task.get_name(), task.exception())
        self._tasks = []
        if self.webhook_sender is not None:
            await asyncio.sleep(0)
        await self.store.retire_worker(self.worker_id)

    def close(self) -> None:
        self.db.dispose()
