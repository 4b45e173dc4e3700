"""The runtime: every long-lived part of a process, built from settings and wired explicitly.

`serve` runs the API and the workers on one Runtime; `worker` runs only the workers. Nothing is a
module-level global: tests build as many runtimes as they like.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omnirelay.accounts import AccountCache
from omnirelay.channels.base import Channel, HasConnectors
from omnirelay.channels.sandbox import SandboxChannel
from omnirelay.config import CHANNELS, Settings
from omnirelay.core.accept import NewOmnimessage
from omnirelay.core.reports import ReportContext, WebhookDraft, messente_dlr
from omnirelay.core.secrets import SecretBox
from omnirelay.core.timefmt import utcnow
from omnirelay.core.twilio.callbacks import sign_status_callback, status_callbacks
from omnirelay.engine.dispatcher import Dispatcher
from omnirelay.engine.maintenance import Maintenance
from omnirelay.engine.sink import EngineSink
from omnirelay.engine.wakeup import (
    ATTEMPTS,
    DEADLINES,
    WEBHOOKS,
    Wakeup,
    listen_postgres,
    listen_sqlite,
)
from omnirelay.engine.webhooks import DEFAULT_SIGNERS, Signer, WebhookSender
from omnirelay.errors import ConfigError
from omnirelay.idempotency import Idempotency
from omnirelay.metrics import Metrics
from omnirelay.ratelimits import AcceptLimiter
from omnirelay.store import migrate
from omnirelay.store.database import Database, StoreUnavailable
from omnirelay.store.idempotency import KeyRecord
from omnirelay.store.queries import Store
from omnirelay.store.retention import Retention
from omnirelay.supervisor import Supervisor

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0  # how long readiness waits for the database before saying no

# (the provider's [providers.NAME] table, the settings, NAME) -> the provider
ChannelFactory = Callable[[Mapping[str, Any], Settings, str], Channel]


def _sandbox(_table: Mapping[str, Any], settings: Settings, name: str) -> Channel:
    return SandboxChannel(delay_ms=settings.sandbox.delay_ms,
                          send_delay_ms=settings.sandbox.send_delay_ms,
                          channels=[c for c in CHANNELS if settings.provider_for(c) == name])


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
        self.db = Database(settings.database_url, timeout=settings.database_timeout)
        self.box = SecretBox(settings.secret_key)
        self.report_builders: dict[str, Callable[[ReportContext], list[WebhookDraft]]] = {
            "messente": messente_dlr,
            "twilio": status_callbacks,
        }
        # Every process that records statuses builds and signs callbacks, API or worker alike.
        self.signers: dict[str, Signer] = {**DEFAULT_SIGNERS, "twilio": sign_status_callback}
        self.metrics = Metrics()
        self.store = Store(self.db, self.box, self._build_reports, self.metrics,
                           settings.engine.receipt_match_window)
        self.accounts = AccountCache(self.store)
        self.idempotency = Idempotency(self.store, settings.idempotency.window_hours)
        self.limits = AcceptLimiter(self.db)  # per-account accept rates (omnirelay.ratelimits)
        self.wakeup = Wakeup()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.supervisor = Supervisor(self.metrics)
        self.sink = EngineSink(self.store, self.wakeup, self.supervisor, self.metrics)
        self.providers = self._build_providers(factories or provider_factories())
        self.channels: dict[str, Channel] = {
            name: self.providers[settings.provider_for(name)] for name in CHANNELS
        }
        for provider in self.providers.values():  # SMPP binds -> omnirelay_smpp_bind_up
            if callable(bind_states := getattr(provider, "bind_states", None)):
                self.metrics.watch_binds(bind_states)
        self._engine_tasks: list[str] = []
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
                raise ConfigError(f"[providers.{name}] type: unknown provider type {kind!r} "
                                  f"(known: {', '.join(sorted(factories))})",
                                  section=f"providers.{name}", key="type")
            providers[name] = factory(self.settings.providers.get(name, {}), self.settings, name)
        return providers

    def _build_reports(self, ctx: ReportContext) -> list[WebhookDraft]:
        builder = self.report_builders.get(ctx.surface)
        return builder(ctx) if builder is not None else []

    # used by the API surfaces --------------------------------------------------------------

    async def accept(self, messages: Sequence[NewOmnimessage],
                     remember: KeyRecord | None = None) -> None:
        """Durably store accepted messages (the store's writer commits concurrent requests
        together) and wake the dispatcher. `remember`: the idempotency key and answer committed
        with them (raises KeyTaken when another process stored the key first)."""
        if not messages and remember is None:
            return
        await self.store.insert_omnimessages(messages, utcnow(), remember)
        self.wakeup.wake(ATTEMPTS, DEADLINES)
        for message in messages:
            self.metrics.accepted.labels(message.surface).inc()

    async def cancel(self, account_id: int, omnimessage_id: str) -> bool:
        return await self.store.cancel(account_id, omnimessage_id, utcnow())

    # lifecycle -----------------------------------------------------------------------------

    def migrate(self) -> migrate.Upgrade:
        return migrate.upgrade(self.db)

    async def start(self, *, workers: bool = True) -> None:
        for provider in self.providers.values():
            await provider.start(self.sink)
        self.started_channels = True
        if not workers:
            return
        self.dispatcher = Dispatcher(self.store, self.channels, self.settings.engine,
                                     self.worker_id, self.wakeup, self.metrics)
        self.webhook_sender = WebhookSender(self.store, self.accounts, self.settings.webhooks,
                                            self.wakeup.subscribe(WEBHOOKS), self.signers,
                                            self.metrics, production=self.settings.is_production)
        retention = Retention(self.db, self.settings.retention, self.idempotency.window)
        maintenance = Maintenance(self.store, self.sink, self.settings.engine, self.worker_id,
                                  self.wakeup, retention, self.metrics)
        stopping = self.supervisor.stopping_event
        self.supervisor.spawn("dispatcher", lambda: self._dispatch(stopping))
        self.supervisor.spawn("webhooks", lambda: self._send_webhooks(stopping))
        self.supervisor.spawn("expiry", lambda: maintenance.run_expiry(stopping))
        self.supervisor.spawn("housekeeping", lambda: maintenance.run_housekeeping(stopping))
        self._engine_tasks = ["dispatcher", "webhooks", "expiry", "housekeeping"]
        if self.db.wake_address is not None:
            self.supervisor.spawn("listen", lambda: listen_sqlite(self.db, self.wakeup))
        elif not self.db.is_sqlite:
            dsn = self.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
            self.supervisor.spawn("listen", lambda: listen_postgres(dsn, self.wakeup, stopping))

    async def _dispatch(self, stopping: asyncio.Event) -> None:
        assert self.dispatcher is not None
        await self.dispatcher.run(stopping)

    async def _send_webhooks(self, stopping: asyncio.Event) -> None:
        assert self.webhook_sender is not None
        await self.webhook_sender.run(stopping)

    async def stop(self) -> None:
        """Stop the engine's loops, let dispatched batches finish, then stop the channels."""
        self.wakeup.wake()
        await self.supervisor.cancel("listen")
        await self.supervisor.stop(grace=10, names=self._engine_tasks)
        if self.dispatcher is not None:
            await self.dispatcher.drain()
        if self.started_channels:
            for provider in self.providers.values():
                await provider.stop()
            self.started_channels = False
        await self.supervisor.stop(grace=5)
        self._engine_tasks = []
        if self.dispatcher is not None or self.webhook_sender is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.store.retire_worker(self.worker_id)

    # readiness ---------------------------------------------------------------------------------

    async def readiness(self, within: float = READY_TIMEOUT) -> dict[str, Any]:
        """What this process can do now, for `/health/ready`: ready when the database takes a
        write within `within` seconds and no supervised task is failing. Upstream connectors are
        reported but do not make the process unready: messages accepted while a link is down
        wait durably until it is back."""
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.db.ping, within), within + 0.5)
            database: dict[str, Any] = {"ok": True}
        except (StoreUnavailable, TimeoutError) as exc:
            database = {"ok": False, "error": str(exc) or f"no answer within {within:g} s"}
        database["seconds"] = round(time.monotonic() - started, 3)
        failing = self.supervisor.failing()
        connectors = {name: provider.connector_states()
                      for name, provider in self.providers.items()
                      if isinstance(provider, HasConnectors)}
        return {"ready": database["ok"] and not failing, "database": database,
                "tasks": self.supervisor.report(), "failing": failing,
                "connectors": connectors}

    def close(self) -> None:
        self.db.dispose()
