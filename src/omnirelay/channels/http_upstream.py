"""Small pieces shared by the HTTP chat providers (WhatsApp Cloud, Viber bot, Telegram).

- `ConfigTable`: reads one `[providers.NAME]` table with clear `ConfigError`s and rejects unknown
  keys, so a typo in a credential name fails at start instead of at the first send.
- `SenderTable`: which configured sender (phone-number id, bot) serves a message's `sender`.
- `new_client`: the one httpx.AsyncClient a provider keeps between start() and stop().
- Signature helpers that compare in constant time, and phone-number normalisation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypeVar

import httpx

from omnirelay.channels.base import Channel
from omnirelay.core.timefmt import utcnow
from omnirelay.errors import ConfigError

T = TypeVar("T")

# A webhook body bigger than this is not a provider callback; refuse it before hashing it.
MAX_WEBHOOK_BODY = 1024 * 1024


class ProviderFactory(Protocol):
    """How a provider module builds a channel from its `[providers.NAME]` table. `name` is the
    provider's configuration key (also its webhook mount point); `public_url` is the app's public
    base URL, for providers that tell the upstream where to call back."""

    def __call__(self, table: Mapping[str, Any], *, name: str, public_url: str) -> Channel: ...


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
