"""The webhook sender: claim due callbacks from the outbox, sign, POST, record the result.

Each callback is its own task, so one slow receiver holds only its own slots: a receiver (host:
port) gets at most `PER_RECEIVER_LIMIT` concurrent requests, and up to as many more claimed ones
wait in memory for the next free slot. A receiver with both full is left out of the claim until it
has drained back to one slot-set's worth, so a slow receiver's backlog stays in the database
instead of being claimed and put back over and over; it is delivered at the receiver's pace.

Only 2xx means delivered. A 3xx is a failed try (redirects are not followed: the report would be
re-sent to a URL the customer did not configure), with the Location in `last_error`. Every
destination passes the policy of core/destinations.py on each address its name resolves to;
the connection then goes to exactly those checked addresses (the resolver below is the one the
HTTP client connects with), so DNS cannot answer one thing to the check and another to connect.
A refused destination is dead at once: no retry can change the answer, the configuration can.

The client is aiohttp rather than httpx: posting small bodies to a local receiver, aiohttp did
about 6,700 requests/s where httpx did about 340 on this machine, and webhooks are one POST per
status change, the busiest outbound path by far.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from omnirelay.accounts import AccountCache
from omnirelay.config import WebhookSettings
from omnirelay.core.backoff import retry_delay
from omnirelay.core.destinations import (
    DestinationPolicy,
    DestinationRefused,
    looks_like_address,
    receiver_host,
    url_origin,
    without_userinfo,
)
from omnirelay.core.signing import messente_signature
from omnirelay.core.timefmt import utcnow
from omnirelay.engine.wakeup import wait
from omnirelay.metrics import Metrics
from omnirelay.store.database import StoreUnavailable
from omnirelay.store.queries import Account, ClaimedWebhook, Store, WebhookResult

__all__ = ["DEFAULT_SIGNERS", "PolicyResolver", "Signer", "WebhookSender", "receiver_host"]

log = logging.getLogger(__name__)

PER_RECEIVER_LIMIT = 16
DEFER_SECONDS = 0.5
FLUSH_RETRY = 1.0
# A receiver's spellings (http://H, https://H:443, ...) remembered to leave it out of the claim.
MAX_ORIGINS = 8

# kind -> (account, url, body) -> headers to send
Signer = Callable[[Account, str, bytes], dict[str, str]]


def sign_dlr(account: Account, _url: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "X-Messente-Signature": messente_signature(account.api_password, body)}


def sign_inbound(account: Account, _url: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "X-Messente-Signature": messente_signature(account.inbound_secret, body)}


DEFAULT_SIGNERS: dict[str, Signer] = {"dlr": sign_dlr, "inbound": sign_inbound}


class PolicyResolver(AbstractResolver):
    """Resolves a receiver's name and returns its addresses only if every one passes the policy.
    aiohttp connects to what this returns (and caches it), never to a second lookup."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"])
            except ValueError:
                raise DestinationRefused(f"{host} resolves to {result['host']!r}, which is not "
                                         "an address the policy can check") from None
            reason = self.policy.refusal(host, address)
            if reason is not None:
                raise DestinationRefused(reason)
        return results

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class _Receiver:
    in_flight: int = 0
    waiting: deque[tuple[ClaimedWebhook, float]] = field(default_factory=deque)
    origins: set[str] = field(default_factory=set)


class WebhookSender:
    def __init__(self, store: Store, accounts: AccountCache, settings: WebhookSettings,
                 wake: asyncio.Event, signers: dict[str, Signer] | None = None,
                 metrics: Metrics | None = None, *, production: bool = False,
                 resolver: AbstractResolver | None = None) -> None:
        self.store = store
        self.accounts = accounts
        self.settings = settings
        self.wake = wake
        self.signers = dict(DEFAULT_SIGNERS if signers is None else signers)
        self.metrics = metrics or Metrics()
        # Development mode lets local receivers (127.0.0.1, ::1) be called; production does not.
        self.policy = DestinationPolicy.build(settings.allowed_destinations,
                                              allow_loopback=not production)
        self._inner_resolver = resolver
        self.limit = max(1, min(PER_RECEIVER_LIMIT, settings.concurrency))
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._receivers: dict[str, _Receiver] = {}
        self._results: list[WebhookResult] = []
        self._flush_needed = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._capacity = asyncio.Event()
        self._wake_after_flush = False
        self._session: aiohttp.ClientSession | None = None
        # counters a test or benchmark can read
        self.delivered = 0
        self.claims = 0  # claim round trips
        self.claimed = 0  # rows claimed
        self.deferred = 0  # rows claimed and put back untried

    async def run(self, stopping: asyncio.Event) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            connector=aiohttp.TCPConnector(
                limit=self.settings.concurrency * 2, limit_per_host=self.limit,
                resolver=PolicyResolver(self.policy, self._inner_resolver)),
            skip_auto_headers=("User-Agent",), headers={"User-Agent": "omnirelay"},
        )
        flusher = asyncio.get_running_loop().create_task(self._flush_loop(stopping))
        try:
            await self._claim_loop(stopping, flusher)
        finally:
            self._release_waiting()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._flush()
            flusher.cancel()
            await self._session.close()

    def _full(self, receiver: _Receiver) -> bool:
        """Left out of the claim: a whole claim's share would not fit beside what it holds."""
        return receiver.in_flight + len(receiver.waiting) > self.limit

    def _excluded_origins(self) -> list[str]:
        return [origin for receiver in self._receivers.values() if self._full(receiver)
                for origin in receiver.origins]

    async def _claim_loop(self, stopping: asyncio.Event, flusher: asyncio.Task[None]) -> None:
        while not stopping.is_set():
            if flusher.done():  # a side task that ended takes the sender down with it
                raise RuntimeError(f"the webhook result flusher ended: {flusher!r}")
            free = self.settings.concurrency - self._in_flight
            if free <= 0:
                self._capacity.clear()
                await wait(self._capacity, 1.0)
                continue
            excluded = self._excluded_origins()
            # A database error propagates: the supervisor restarts the sender.
            self.claims += 1
            claimed = await self.store.claim_webhooks(
                min(free, self.settings.batch_size), self.settings.lease_seconds, utcnow(),
                per_receiver=self.limit, excluded_origins=excluded)
            self.claimed += len(claimed)
            if not claimed:
                await wait(self.wake, await self._idle_for(excluded))
                continue
            for webhook in claimed:
                self._admit(webhook)

    async def _idle_for(self, excluded: list[str]) -> float:
        now = utcnow()
        nearest = await self.store.next_webhook_time(now, excluded)
        if nearest is None:
            return 1.0
        return min(1.0, max(0.01, (nearest - now).total_seconds()))

    def _admit(self, webhook: ClaimedWebhook) -> None:
        host = receiver_host(webhook.url)
        receiver = self._receivers.setdefault(host, _Receiver())
        if len(receiver.origins) < MAX_ORIGINS:
            receiver.origins.add(url_origin(webhook.url))
        if receiver.in_flight < self.limit:
            self._start(webhook, host, receiver)
        elif len(receiver.waiting) < self.limit:
            receiver.waiting.append((webhook, time.monotonic()))
        else:  # only a receiver spelled more ways than MAX_ORIGINS gets here
            self._defer(webhook, "deferred: receiver busy")

    def _start(self, webhook: ClaimedWebhook, host: str, receiver: _Receiver) -> None:
        receiver.in_flight += 1
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._deliver(webhook, host, receiver))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _defer(self, webhook: ClaimedWebhook, why: str, after: float = DEFER_SECONDS) -> None:
        self.deferred += 1
        self.metrics.webhooks.labels(webhook.kind, "deferred").inc()
        self._record(WebhookResult(webhook.id, False, after, why, deferred=True))

    def _release_waiting(self) -> None:
        """On stop: what waits for a slot goes back to the outbox at once, not after its lease."""
        for receiver in self._receivers.values():
            while receiver.waiting:
                webhook, _ = receiver.waiting.popleft()
                self._defer(webhook, "deferred: sender stopping", 0)

    def _next_waiting(self, host: str, receiver: _Receiver) -> None:
        was_full = receiver.in_flight + len(receiver.waiting) + 1 > self.limit
        stale_after = self.settings.lease_seconds / 2
        while receiver.waiting:
            webhook, since = receiver.waiting.popleft()
            if time.monotonic() - since > stale_after:
                # Its lease could run out mid-request and another claim send it twice.
                self._defer(webhook, "deferred: waited too long for the receiver", 0)
                continue
            self._start(webhook, host, receiver)
            break
        if receiver.in_flight == 0 and not receiver.waiting:
            del self._receivers[host]
        if was_full and not self._full(receiver):
            self.wake.set()  # it can take a claim's share again

    async def _deliver(self, webhook: ClaimedWebhook, host: str, receiver: _Receiver) -> None:
        try:
            try:
                result = await self._post(webhook)
            except Exception as exc:  # signing needs the account: the database may be down
                log.warning("%s webhook %d: could not prepare it (%s); trying again shortly",
                            webhook.kind, webhook.id, exc)
                result = WebhookResult(webhook.id, False, FLUSH_RETRY, "not sent: " + str(exc),
                                       deferred=True)
            if result.delivered and not self._full(receiver):
                # A later report of the same message may be claimable now; a full receiver's
                # are not, and its draining wakes the claim anyway.
                self._wake_after_flush = True
            self._record(result)
            outcome = "delivered" if result.delivered else "dead" if result.give_up else "retry"
            self.metrics.webhooks.labels(webhook.kind, outcome).inc()
        finally:
            receiver.in_flight -= 1
            self._in_flight -= 1
            self._next_waiting(host, receiver)
            self._capacity.set()

    async def _post(self, webhook: ClaimedWebhook) -> WebhookResult:
        assert self._session is not None
        account = await self.accounts.by_id(webhook.account_id)
        signer = self.signers.get(webhook.kind)
        if account is None or signer is None:
            return WebhookResult(webhook.id, False, 0, f"cannot sign a {webhook.kind} webhook",
                                 give_up=True)
        try:
            self._check_literal(webhook.url)
        except DestinationRefused as exc:
            return self._refused(webhook, str(exc))
        headers = signer(account, webhook.url, webhook.body)
        try:
            async with self._session.post(webhook.url, data=webhook.body, headers=headers,
                                          allow_redirects=False) as response:
                status = response.status
                location = response.headers.get("Location")
        except DestinationRefused as exc:
            return self._refused(webhook, str(exc))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, DestinationRefused):
                return self._refused(webhook, str(exc.os_error))
            return self._failure(webhook, f"{type(exc).__name__}: {exc}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return self._failure(webhook, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            self.delivered += 1
            return WebhookResult(webhook.id, True, status=status)
        if 300 <= status < 400:
            target = without_userinfo(location) if location else "nowhere (no Location)"
            return self._failure(webhook, f"HTTP {status} redirect to {target}; redirects are "
                                          "not followed, configure the final URL", status)
        return self._failure(webhook, f"HTTP {status}", status)

    def _check_literal(self, url: str) -> None:
        """An address written in the URL is connected to without a lookup, so the resolver never
        sees it: check it here."""
        host = URL(url).raw_host or ""
        if not looks_like_address(host):
            return
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise DestinationRefused(f"{host} is not an address the policy can check") from None
        reason = self.policy.refusal(host, address)
        if reason is not None:
            raise DestinationRefused(reason)

    def _refused(self, webhook: ClaimedWebhook, reason: str) -> WebhookResult:
        error = (f"destination refused: {reason}; allow it with [webhooks] "
                 "allowed_destinations")
        log.error("%s webhook %d to %s: %s; not retried", webhook.kind, webhook.id,
                  receiver_host(webhook.url), error)
        return WebhookResult(webhook.id, False, 0, error, give_up=True)

    def _failure(self, webhook: ClaimedWebhook, error: str, status: int | None = None
                 ) -> WebhookResult:
        tries = webhook.tries + 1
        give_up = tries >= self.settings.max_tries
        host = receiver_host(webhook.url)
        if give_up:
            log.error("%s webhook %d to %s failed (%s); giving up after %d tries", webhook.kind,
                      webhook.id, host, error, tries)
            return WebhookResult(webhook.id, False, 0, error, give_up=True, status=status)
        delay = retry_delay(tries, base=self.settings.backoff_base,
                            factor=self.settings.backoff_factor, cap=self.settings.backoff_max,
                            jitter=self.settings.jitter)
        log.warning("%s webhook %d to %s failed (%s), try %d of %d; next try in %.0f s at %s",
                    webhook.kind, webhook.id, host, error, tries, self.settings.max_tries, delay,
                    (utcnow() + timedelta(seconds=delay)).isoformat(timespec="seconds") + "Z")
        return WebhookResult(webhook.id, False, delay, error, status=status)

    def _record(self, result: WebhookResult) -> None:
        self._results.append(result)
        self._flush_needed.set()

    async def _flush_loop(self, stopping: asyncio.Event) -> None:
        while True:
            await self._flush_needed.wait()
            self._flush_needed.clear()
            if not await self._flush():
                await asyncio.sleep(FLUSH_RETRY)
                self._flush_needed.set()

    async def _flush(self) -> bool:
        """Record the results gathered so far; False when the database was out of reach (the
        results are kept for the next flush). Never raises: this runs beside the claim loop.
        One at a time: the last flush at stop waits for the flusher's, which it then cancels."""
        async with self._flushing:
            return await self._flush_now()

    async def _flush_now(self) -> bool:
        if not self._results:
            return True
        batch, self._results = self._results, []
        wake, self._wake_after_flush = self._wake_after_flush, False
        try:
            await self.store.finish_webhooks(batch, utcnow())
        except StoreUnavailable as exc:
            log.warning("recording %d webhook results failed (%s); keeping them to retry",
                        len(batch), exc)
            self._results[:0] = batch
            self._wake_after_flush = self._wake_after_flush or wake
            return False
        except Exception:
            # The leases run out and these are sent again: at least once, never lost.
            log.exception("recording %d webhook results failed", len(batch))
        if wake or any(r.deferred for r in batch):
            self.wake.set()
        return True
