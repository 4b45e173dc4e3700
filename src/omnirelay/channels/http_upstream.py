"""Small pieces shared by the HTTP chat providers (WhatsApp Cloud, Viber bot, Telegram).

- `ConfigTable`: reads one `[providers.NAME]` table with clear `ConfigError`s and rejects unknown
  keys, so a typo in a credential name fails at start instead of at the first send.
- `SenderTable`: which configured sender (phone-number id, bot) serves a message's `sender`.
- `new_client`: the one httpx.AsyncClient a provider keeps between start() and stop().
- `HttpChannel`: start/stop and the bounded, retry-on-network-error POST of every provider.
- `SubscriberBotChannel`: the bot providers (Viber, Telegram) that reach a phone number only
  through the address its user shared with one of our bots.
- `create_provider`: each module's `create_channel`, from its PROVIDERS table.
- Signature helpers that compare in constant time, and phone-number normalisation.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from omnirelay.channels.base import Channel, ChannelSink, OutboundMessage, SendResult
from omnirelay.core.statuses import Err, Status
from omnirelay.core.timefmt import utcnow
from omnirelay.errors import ConfigError

T = TypeVar("T")
B = TypeVar("B")

# A webhook body bigger than this is not a provider callback; refuse it before hashing it.
MAX_WEBHOOK_BODY = 1024 * 1024
# Seconds before another try when a request got no answer or a 5xx (nothing is known to be sent).
TRANSIENT_RETRY = 5.0
# Length of the subscribers.provider column that holds "<provider name>:<sender key>".
REGISTRY_KEY_LIMIT = 64


class ProviderFactory(Protocol):
    """How a provider module builds a channel from its `[providers.NAME]` table. `name` is the
    provider's configuration key (also its webhook mount point); `public_url` is the app's public
    base URL, for providers that tell the upstream where to call back."""

    def __call__(self, table: Mapping[str, Any], *, name: str, public_url: str) -> Channel: ...


def create_provider(providers: Mapping[str, ProviderFactory], family: str, default: str,
                    settings: Mapping[str, Any], name: str | None, public_url: str) -> Channel:
    """The channel of the provider that `settings["type"]` (else `name`, else `default`) names;
    `family` ("Viber") only words the error."""
    kind = str(settings.get("type") or name or default)
    factory = providers.get(kind)
    if factory is None:
        raise ConfigError(f"[providers.{name or kind}] unknown {family} provider type {kind!r} "
                          f"(known: {', '.join(sorted(providers))})")
    return factory(settings, name=name or kind, public_url=public_url)


# --- configuration ------------------------------------------------------------------------------


class ConfigTable:
    """Typed, checked access to one provider table. Call `done()` last: it rejects unknown keys."""

    # Keys the runtime itself reads from every provider table.
    RUNTIME_KEYS = frozenset({"type"})

    def __init__(self, provider: str, raw: Mapping[str, Any], prefix: str = "providers") -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"[{prefix}.{provider}] must be a table")
        self.where = f"[{prefix}.{provider}]"
        self.raw = raw
        self.seen: set[str] = set(self.RUNTIME_KEYS)

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        return self.raw.get(key)

    def string(self, key: str, default: str | None = None) -> str:
        """A non-empty string; required when `default` is None."""
        value = self._get(key)
        if value is None:
            if default is None:
                raise ConfigError(f"{self.where} {key} is required")
            return default
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.where} {key} must be a non-empty string")
        return value.strip()

    def optional_string(self, key: str) -> str | None:
        value = self._get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self.where} {key} must be a string")
        return value.strip()

    def url(self, key: str, default: str | None = None) -> str:
        value = self.string(key, default)
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"{self.where} {key} must be an http(s) URL, not {value!r}")
        return value.rstrip("/")

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            raise ConfigError(f"{self.where} {key} must be a number above {minimum:g}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{self.where} {key} must be an integer >= {minimum}")
        return value

    def table(self, key: str) -> Mapping[str, Any]:
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.where} {key} must be a table")
        return value

    def sub(self, key: str, name: str) -> ConfigTable:
        """A nested table such as `senders."MyBot"`, with its own unknown-key check."""
        raw = self.table(key).get(name)
        prefix = f"{self.where[1:-1]}.{key}"
        inner = ConfigTable(name, raw if raw is not None else {}, prefix=prefix)
        inner.seen.discard("type")
        return inner

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise ConfigError(f"{self.where}: unknown setting(s) {', '.join(unknown)}")


@dataclass(frozen=True)  # no slots: `cls.timeout` must read the default
class HttpSettings:
    """Client settings every HTTP provider takes (keys `timeout`, `connect_timeout`,
    `max_concurrency`)."""

    timeout: float = 15.0
    connect_timeout: float = 5.0
    max_concurrency: int = 16

    @classmethod
    def read(cls, table: ConfigTable) -> HttpSettings:
        return cls(
            timeout=table.number("timeout", cls.timeout),
            connect_timeout=table.number("connect_timeout", cls.connect_timeout),
            max_concurrency=table.integer("max_concurrency", cls.max_concurrency),
        )


@dataclass(frozen=True, slots=True)
class SenderTable(Generic[T]):
    """Sender name -> what sends as it (a phone-number id, a bot). A message whose `sender` is not
    configured goes out through `default`: the account default sender is often an SMS name that
    means nothing to a chat upstream, and refusing it would fail every such message."""

    entries: Mapping[str, T]
    default: str

    @classmethod
    def read(cls, table: ConfigTable, parse: Callable[[str, Any], T]) -> SenderTable[T]:
        senders = table.table("senders")
        if not senders:
            raise ConfigError(f"{table.where} senders must name at least one sender")
        entries = {str(key): parse(str(key), value) for key, value in senders.items()}
        default = table.optional_string("default_sender")
        if default is None:
            if len(entries) > 1:
                raise ConfigError(f"{table.where} default_sender is required with several senders")
            default = next(iter(entries))
        if default not in entries:
            raise ConfigError(f"{table.where} default_sender {default!r} is not one of senders")
        return cls(entries, default)

    def key_for(self, sender: str | None) -> str:
        """The configured sender key serving `sender`: an exact match, else the same phone number
        written differently (+372..., 372...), else the default."""
        if sender:
            if sender in self.entries:
                return sender
            wanted = phone_digits(sender)
            if wanted:
                for key in self.entries:
                    if phone_digits(key) == wanted:
                        return key
        return self.default

    def __getitem__(self, key: str) -> T:
        return self.entries[key]


def registry_key(provider: str, sender_key: str) -> str:
    """Where a bot's subscribers are registered: a user's address (Viber user id, Telegram chat
    id) is valid only for the bot that learned it."""
    return f"{provider}:{sender_key}"


def read_bots(table: ConfigTable, provider: str, parse: Callable[[str, ConfigTable], T]
              ) -> SenderTable[T]:
    """The `senders` of a bot provider, one sub-table per bot; `parse(key, sub)` reads a bot's
    settings. The key also names the bot's webhook path and registry key, hence its limits."""

    def bot(key: str, _value: Any) -> T:
        sub = table.sub("senders", key)
        parsed = parse(key, sub)
        sub.done()
        if len(registry_key(provider, key)) > REGISTRY_KEY_LIMIT or "/" in key:
            raise ConfigError(f"{sub.where}: a sender key must be short and without '/'")
        return parsed

    return SenderTable.read(table, bot)


# --- HTTP -----------------------------------------------------------------------------------------


def new_client(base_url: str, http: HttpSettings, headers: Mapping[str, str] | None = None
               ) -> httpx.AsyncClient:
    """One pooled client per provider; connections are reused across batches."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers=dict(headers or {}),
        timeout=httpx.Timeout(http.timeout, connect=http.connect_timeout),
        limits=httpx.Limits(max_connections=http.max_concurrency,
                            max_keepalive_connections=http.max_concurrency),
    )


class UpstreamSettings(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def http(self) -> HttpSettings: ...


S = TypeVar("S", bound=UpstreamSettings)


class HttpChannel(Generic[S]):
    """What every HTTP provider does alike: one pooled client from start() to stop(), at most
    `max_concurrency` requests in flight, and a network error taken as "try again later"."""

    def __init__(self, settings: S, name: str) -> None:
        self.name = name
        self.settings = settings
        self._sink: ChannelSink | None = None
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(settings.http.max_concurrency)
        # The provider module's logger, so log configuration keeps addressing each provider.
        self._log = logging.getLogger(type(self).__module__)

    def _headers(self) -> Mapping[str, str] | None:
        """Headers every request carries (an account-wide credential), if any."""
        return None

    async def start(self, sink: ChannelSink) -> None:
        self._sink = sink
        self._client = new_client(self.settings.base_url, self.settings.http, self._headers())

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _post(self, message_id: str, path: str, body: Mapping[str, Any],
                    headers: Mapping[str, str] | None = None) -> httpx.Response | SendResult:
        """The upstream's answer, or the retry that ends this try when none came."""
        assert self._client is not None
        async with self._slots:
            try:
                return await self._client.post(path, json=body, headers=headers)
            except httpx.HTTPError as exc:
                # At-least-once: a timeout after the upstream took the request may send it twice.
                self._log.warning("%s: %s for %s; will retry", self.name, type(exc).__name__,
                                  message_id)
                return SendResult(message_id, retry_after=TRANSIENT_RETRY)


class BotSettings(UpstreamSettings, Protocol[B]):
    @property
    def senders(self) -> SenderTable[B]: ...


BS = TypeVar("BS", bound="BotSettings[Any]")


class SubscriberBotChannel(HttpChannel[BS], ABC, Generic[BS, B]):
    """A bot provider (Viber Bot API, Telegram Bot API). A bot cannot address a phone number,
    only a user who shared their number with that bot: the webhook stores phone -> address with
    `remember_subscriber` under `registry_key`, and a message to a phone with no address fails at
    once (FAILED, err 9) so the omnimessage's next channel starts.

    Each bot has its webhook at /<sender key> (and the default bot at /)."""

    # Why a message went nowhere; "{key}" is the bot's sender key.
    not_subscribed = "the recipient has not shared a phone number with the bot {key}"

    def registry_key(self, sender_key: str) -> str:
        return registry_key(self.name, sender_key)

    async def send(self, batch: Sequence[OutboundMessage]) -> list[SendResult]:
        if self._sink is None or self._client is None:
            raise RuntimeError(f"{self.name} is not started")
        by_bot: dict[str, list[OutboundMessage]] = {}
        for message in batch:
            by_bot.setdefault(self.settings.senders.key_for(message.sender), []).append(message)
        jobs: list[Coroutine[Any, Any, SendResult]] = []
        for key, messages in by_bot.items():
            addresses = await self._sink.lookup_subscribers(self.registry_key(key),
                                                            sorted({m.to for m in messages}))
            bot = self.settings.senders[key]
            jobs.extend(self._send_to(key, bot, m, addresses.get(m.to)) for m in messages)
        return list(await asyncio.gather(*jobs))

    async def _send_to(self, key: str, bot: B, message: OutboundMessage, address: str | None
                       ) -> SendResult:
        if address is None:
            return SendResult(message.message_id, status=Status.FAILED, err=Err.UNROUTABLE,
                              error=self.not_subscribed.format(key=key))
        return await self._send_one(bot, message, address)

    @abstractmethod
    async def _send_one(self, bot: B, message: OutboundMessage, address: str) -> SendResult:
        """Send to the address the recipient's phone number is registered with for `bot`."""

    async def _send_parts(self, message_id: str,
                          parts: Sequence[Callable[[], Coroutine[Any, Any, str | SendResult]]]
                          ) -> list[str] | SendResult:
        """Send one message's parts in order, each returning its provider ref or the result that
        ends the attempt. The refs of what went out; the first failure when nothing did."""
        refs: list[str] = []
        for index, part in enumerate(parts):
            result = await part()
            if isinstance(result, str):
                refs.append(result)
                continue
            if not refs:
                return result
            # The first part is on its way and cannot be recalled: report what was sent.
            self._log.warning("%s: part %d of %s not sent (%s)", self.name, index + 1,
                              message_id, result.error or result.status)
            break
        return refs

    # --- webhooks ---------------------------------------------------------------------------------

    async def register_webhooks(self, public_url: str) -> dict[str, str]:
        """Point every bot's webhook at <public_url>/webhooks/<name>/<sender key>. The upstream
        may call the URL back to check it, so run this once the app serves requests (a CLI step,
        not start()). Returns sender key -> problem, empty when all succeeded."""
        if self._client is None:
            raise RuntimeError(f"{self.name} is not started")
        problems: dict[str, str] = {}
        for key, bot in self.settings.senders.entries.items():
            url = f"{public_url.rstrip('/')}/webhooks/{self.name}/{quote(key, safe='')}"
            problem = await self._set_webhook(self._client, bot, url)
            if problem is not None:
                problems[key] = problem
        return problems

    @abstractmethod
    async def _set_webhook(self, client: httpx.AsyncClient, bot: B, url: str) -> str | None:
        """Register `url` as the bot's webhook; the upstream's complaint, None on success."""

    def routes(self) -> list[BaseRoute]:
        return [Route("/", self._webhook, methods=["POST"]),
                Route("/{sender}", self._webhook, methods=["POST"])]

    async def _webhook(self, request: Request) -> Response:
        key = request.path_params.get("sender", self.settings.senders.default)
        if key not in self.settings.senders.entries:
            return PlainTextResponse("no such bot", status_code=404)
        return await self._bot_webhook(self.settings.senders[key], request)

    @abstractmethod
    async def _bot_webhook(self, bot: B, request: Request) -> Response:
        """One callback of `bot`'s upstream; authenticate it before trusting anything in it."""


def retry_after_header(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if there is one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when.replace(tzinfo=None) - utcnow()).total_seconds())


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response body as a JSON object, or {} when it is anything else (an HTML error page from
    a proxy, an empty body)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def utc_from_epoch(value: Any, per_second: int = 1) -> datetime | None:
    """A naive UTC time from a Unix timestamp in 1/`per_second` seconds; None when `value` is
    not one (missing, garbage, out of range)."""
    try:
        return datetime.fromtimestamp(int(value) / per_second, UTC).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


# --- signatures -----------------------------------------------------------------------------------


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def same_secret(expected: str, given: str) -> bool:
    """Constant-time comparison that also accepts non-ASCII input (compare_digest on str does
    not)."""
    return hmac.compare_digest(expected.encode(), given.encode())


# --- phone numbers --------------------------------------------------------------------------------

_NOT_DIGIT = re.compile(r"\D")


def phone_digits(number: str) -> str:
    """The digits of a phone number as upstreams want them (no '+', spaces or dashes)."""
    return _NOT_DIGIT.sub("", number)


def e164(number: str) -> str:
    """'+' and digits: the form OutboundMessage.to uses, so registry look-ups match."""
    digits = phone_digits(number)
    return f"+{digits}" if digits else ""
