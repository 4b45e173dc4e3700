"""Configuration: one TOML file plus OMNIRELAY_* environment variables that override it.

Top-level keys are overridden by `OMNIRELAY_<KEY>`, keys of a section by
`OMNIRELAY_<SECTION>__<KEY>` (double underscore), e.g. `OMNIRELAY_ENGINE__BATCH_SIZE=500`. A value
is read as a TOML literal when it parses as one (numbers, booleans, arrays), else as a string.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnirelay.core.destinations import DestinationPolicy
from omnirelay.core.validation import url_problem
from omnirelay.errors import ConfigError

DEFAULT_CONFIG_FILE = "omnirelay.toml"
DEV_SECRET_KEY = "omnirelay-development-key-do-not-use-in-production"  # noqa: S105 (refused in production)
ENV_PREFIX = "OMNIRELAY_"
CHANNELS = ("sms", "viber", "whatsapp", "telegram", "rcs")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    batch_size: int = 500
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    # After a claim that did not fill a batch, the dispatcher waits this long before claiming
    # again, so that under load it claims what a few dozen requests committed together rather
    # than each request's attempts alone (each claim is a write transaction). The first claim
    # after a quiet spell is not delayed.
    claim_linger: float = 0.05
    default_validity_seconds: int = 6 * 3600
    max_sms_parts: int = 20
    fragment_timeout_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    # An upstream id (an SMSC message id) is kept this long after its attempt ended, for late
    # receipts; then it is purged, so an SMSC that reuses ids cannot match an old attempt.
    provider_ref_keep_seconds: float = 3 * 86400.0
    # A receipt that matches no message is kept this long, for the message whose submit
    # response is still being recorded; it may only match a submission that began at most this
    # long before it arrived, and is dropped (counted in /metrics) when nothing claimed it.
    receipt_match_window: float = 120.0


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    max_tries: int = 10
    # Delay before try n (n >= 2) is backoff_base * backoff_factor**(n-2), capped, with +-jitter:
    # the defaults spread 10 tries over about a day.
    backoff_base: float = 30.0
    backoff_factor: float = 3.0
    backoff_max: float = 6 * 3600.0
    jitter: float = 0.2
    timeout: float = 10.0
    concurrency: int = 64
    batch_size: int = 500
    lease_seconds: float = 60.0
    # Host names and networks (CIDR) webhooks may reach even when private, loopback, link-local
    # and so on; see omnirelay.core.destinations for what is refused without them.
    allowed_destinations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Bounds on what one client can make the HTTP server hold: without them a single
    connection could send an endless header line or trickle a body forever."""

    max_request_line_bytes: int = 8192  # 414 beyond
    max_header_bytes: int = 32768  # request line and headers together; 431 beyond
    max_headers: int = 100  # 431 beyond
    request_timeout: float = 30.0  # a whole request (head and body) once it starts; else 408
    keep_alive_timeout: int = 5  # seconds before an idle keep-alive connection is closed
    max_connections: int = 1000  # open connections; a request on one beyond answers 503


@dataclass(frozen=True, slots=True)
class AdminSettings:
    # The operator API (/admin/v1) answers only when a token is set; clients send it as
    # `Authorization: Bearer <token>`.
    token: str = ""


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    # The web console at /console. Unset, it is on in development mode and off in production.
    enabled: bool = True
    session_minutes: int = 480  # a signed-in session lasts this long, then signs in again


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """Days to keep finished rows; 0 keeps them for ever. Content (the text) follows each
    message's text_store regardless."""

    omnimessages_days: int = 0  # finished or canceled omnimessages, their attempts and events
    inbound_days: int = 0
    webhooks_days: int = 7  # delivered and dead callbacks, by when they were queued
    batch_size: int = 1000  # rows per delete; a pass stops after a few batches and goes on later


@dataclass(frozen=True, slots=True)
class IdempotencySettings:
    # How long an Idempotency-Key answers its first request again; then it is purged and free.
    window_hours: float = 24.0


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    delay_ms: int = 100  # from send to status report
    send_delay_ms: int = 0  # how long the upstream takes to accept a batch


@dataclass(frozen=True, slots=True)
class LookupSettings:
    """Who answers number lookups (POST /hlr/sync); see omnirelay.lookups."""

    provider: str = "offline"  # offline, sandbox or http
    url: str = ""  # http: the HLR service's /hlr/sync-style endpoint
    token: str = ""  # http: sent as Authorization: Bearer
    username: str = ""  # http: HTTP Basic instead of a token
    password: str = ""
    timeout: float = 10.0  # http: seconds for the whole call


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite:///omnirelay.db"
    # How long a unit of work waits for the database (a lock held by another process, a pool
    # checkout, a connect) before it fails: an API request then answers 503, a loop retries.
    database_timeout: float = 5.0
    mode: str = "development"
    secret_key: str = DEV_SECRET_KEY
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    max_body_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line, for log collectors
    access_log: bool = False  # one line per HTTP request (omnirelay.logs)
    engine: EngineSettings = field(default_factory=EngineSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    idempotency: IdempotencySettings = field(default_factory=IdempotencySettings)
    lookup: LookupSettings = field(default_factory=LookupSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    # channel name -> provider name; anything not named here is served by the sandbox.
    channels: dict[str, str] = field(default_factory=dict)
    # provider name -> its raw settings table, validated by the provider itself.
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.mode == "production"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    def provider_for(self, channel: str) -> str:
        return self.channels.get(channel, "sandbox")


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the TOML file (the given path, else ./omnirelay.toml if present), apply environment
    overrides, then explicit overrides (CLI flags), and validate."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    config_path = config_file(path, environ)
    if config_path is not None:
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {config_path} does not exist: give an existing "
                              "file with --config (or OMNIRELAY_CONFIG), or none for the "
                              "defaults") from None
        except OSError as exc:
            raise ConfigError(f"configuration file {config_path}: cannot read it "
                              f"({exc.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    origins = _apply_environment(raw, environ)
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
            origins[(None, key)] = "--" + key.replace("_", "-")
    try:
        return _build(raw)
    except ConfigError as exc:
        # Say where the fix goes: the environment variable or flag that set the key, else the file.
        origin = origins.get((exc.section, exc.key)) if exc.key is not None else None
        raise exc.located(origin or (str(config_path) if config_path is not None else None)
                          ) from None


def config_file(path: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The configuration file to read: the given path, else $OMNIRELAY_CONFIG, else
    ./omnirelay.toml when present, else none (the defaults)."""
    if path is not None:
        return Path(path)
    if environ.get(ENV_PREFIX + "CONFIG"):
        return Path(environ[ENV_PREFIX + "CONFIG"])
    if Path(DEFAULT_CONFIG_FILE).is_file():
        return Path(DEFAULT_CONFIG_FILE)
    return None


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]
                       ) -> dict[tuple[str | None, str], str]:
    """Apply the OMNIRELAY_* variables; return (section, key) -> the variable that set it."""
    origins: dict[tuple[str | None, str], str] = {}
    for name, text in environ.items():
        if (not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG"
                or name.startswith(ENV_PREFIX + "TEST_")):  # OMNIRELAY_TEST_* is the test suite's
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        target = raw
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{name}: {part} is not a table")
        target[path[-1]] = _parse_env_value(text)
        origins[(".".join(path[:-1]) or None, path[-1])] = name
    return origins


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _where(section: str | None, key: str) -> str:
    return f"[{section}] {key}" if section else key


def _unknown(section: str | None, key: str, known: list[str]) -> ConfigError:
    """An unknown key, with the closest known one (or the known ones) as the fix."""
    message = f"{_where(section, key)}: unknown setting"
    if section is not None and key in Settings.__dataclass_fields__:
        message += (f"; {key} is a top-level setting: move it above the first [section] of the "
                    "file")
    elif close := difflib.get_close_matches(key, known, n=1):
        message += f"; did you mean {close[0]}?"
    else:
        message += f" (known: {', '.join(known)})"
    return ConfigError(message, section=section, key=key)


def _section(raw: dict[str, Any], name: str, cls: type[Any]) -> Any:
    table = raw.pop(name, {}) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: must be a table ([{name}]), not {table!r}", key=name)
    known = list(cls.__dataclass_fields__)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise _unknown(name, unknown[0], known)
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in table.items():
        expected = type(getattr(defaults, key))
        values[key] = _coerce(name, key, value, expected)
    return cls(**values)


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
          tuple: "an array of strings"}


def _coerce(section: str | None, key: str, value: Any, expected: type[Any]) -> Any:
    if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is bool and isinstance(value, bool):
        return value
    if expected is str and isinstance(value, str):
        return value
    if expected is tuple and isinstance(value, list | tuple) and all(
            isinstance(v, str) for v in value):
        return tuple(value)
    kind = _KINDS.get(expected, expected.__name__)
    raise ConfigError(f"{_where(section, key)}: must be {kind}, not {value!r}",
                      section=section, key=key)


_SECTIONS = ("engine", "webhooks", "sandbox", "server", "retention", "admin", "channels",
             "providers", "idempotency", "lookup", "console")


def _build(raw: dict[str, Any]) -> Settings:
    raw = dict(raw)
    engine = _section(raw, "engine", EngineSettings)
    webhooks = _section(raw, "webhooks", WebhookSettings)
    sandbox = _section(raw, "sandbox", SandboxSettings)
    server = _section(raw, "server", ServerSettings)
    retention = _section(raw, "retention", RetentionSettings)
    admin = _section(raw, "admin", AdminSettings)
    idempotency = _section(raw, "idempotency", IdempotencySettings)
    lookup = _section(raw, "lookup", LookupSettings)
    console = _console(raw)
    channels = raw.pop("channels", {}) or {}
    providers = raw.pop("providers", {}) or {}
    if not isinstance(channels, dict):
        raise ConfigError('channels: must be a table mapping channels to providers, e.g. '
                          '[channels] sms = "smpp"', key="channels")
    for channel, provider in sorted(channels.items()):
        if channel not in CHANNELS:
            close = difflib.get_close_matches(channel, CHANNELS, n=1)
            raise ConfigError(f"[channels] {channel}: unknown channel"
                              + (f"; did you mean {close[0]}?" if close else "")
                              + f" (channels: {', '.join(CHANNELS)})",
                              section="channels", key=channel)
        if not isinstance(provider, str):
            raise ConfigError(f"[channels] {channel}: must be a provider's name (a string), "
                              f"not {provider!r}", section="channels", key=channel)
    if not isinstance(providers, dict):
        raise ConfigError("providers: must hold one table per provider, e.g. [providers.smpp]",
                          key="providers")
    for name, table in sorted(providers.items()):
        if not isinstance(table, dict):
            raise ConfigError(f"[providers] {name}: must be a table ([providers.{name}]), not "
                              f"{table!r}", section="providers", key=name)
    for channel, provider in sorted(channels.items()):
        if provider != "sandbox" and provider not in providers:
            raise ConfigError(
                f"[channels] {channel} = {provider!r}, but there is no [providers.{provider}] "
                f'table: add one, or set {channel} = "sandbox"', section="channels", key=channel)
    defaults = Settings()
    top_level = [k for k in Settings.__dataclass_fields__ if k not in _SECTIONS]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in top_level:
            if isinstance(value, dict):
                close = difflib.get_close_matches(key, _SECTIONS, n=1)
                raise ConfigError(f"[{key}]: unknown section"
                                  + (f"; did you mean [{close[0]}]?" if close else
                                     f" (sections: {', '.join(_SECTIONS)})"), key=key)
            raise _unknown(None, key, top_level)
        values[key] = _coerce(None, key, value, type(getattr(defaults, key)))
    settings = Settings(
        engine=engine,
        webhooks=webhooks,
        sandbox=sandbox,
        server=server,
        retention=retention,
        admin=admin,
        idempotency=idempotency,
        lookup=lookup,
        console=console,
        channels=dict(channels),
        providers={k: dict(v) for k, v in providers.items()},
        **values,
    )
    _validate(settings)
    return settings


def _console(raw: dict[str, Any]) -> ConsoleSettings:
    """[console]; `enabled` defaults to on in development mode only."""
    table = raw.get("console")
    explicit = isinstance(table, dict) and "enabled" in table
    console: ConsoleSettings = _section(raw, "console", ConsoleSettings)
    if not explicit and raw.get("mode") == "production":
        console = dataclasses.replace(console, enabled=False)
    return console


def _invalid(section: str | None, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{_where(section, key)}: {problem}", section=section, key=key)


def _validate(settings: Settings) -> None:
    if settings.admin.token and (len(settings.admin.token) < 24
                                 or not settings.admin.token.isascii()
                                 or not settings.admin.token.isprintable()
                                 or " " in settings.admin.token):
        raise _invalid("admin", "token", "must be at least 24 printable ASCII characters without "
                       "spaces, e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    if not 1 <= settings.console.session_minutes <= 7 * 24 * 60:
        raise _invalid("console", "session_minutes", "must be from 1 to 10080 (a week)")
    kept = settings.retention
    for key in ("omnimessages_days", "inbound_days", "webhooks_days"):
        if getattr(kept, key) < 0:
            raise _invalid("retention", key, "must be 0 (keep for ever) or more")
    if kept.batch_size < 1:
        raise _invalid("retention", "batch_size", "must be 1 or more")
    if not 0 < settings.idempotency.window_hours <= 24 * 366:
        raise _invalid("idempotency", "window_hours", "must be a positive number of hours, at "
                       "most 8784 (a year)")
    if settings.log_level.lower() not in LOG_LEVELS:
        raise _invalid(None, "log_level", f"must be one of {', '.join(LOG_LEVELS)}, not "
                       f"{settings.log_level!r}")
    if not 0 <= settings.port <= 65535:
        raise _invalid(None, "port", f"must be from 1 to 65535, not {settings.port}")
    if settings.public_url and (problem := url_problem(settings.public_url)) is not None:
        raise _invalid(None, "public_url", "must be the http or https URL that clients and "
                       f"upstreams reach the gateway at, e.g. https://sms.example.com ({problem})")
    if settings.log_format not in {"text", "json"}:
        raise ConfigError(f"log_format must be 'text' or 'json', not {settings.log_format!r}")
    if settings.mode not in {"development", "production"}:
        raise _invalid(None, "mode", f"must be 'development' or 'production', not "
                       f"{settings.mode!r}")
    if not settings.database_url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
        # Not echoed: the URL may hold a password.
        raise _invalid(None, "database_url", "must be sqlite:///PATH or "
                       "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    if settings.is_production and settings.secret_key == DEV_SECRET_KEY:
        raise _invalid(None, "secret_key", "required in production (set OMNIRELAY_SECRET_KEY to "
                       "a long random string; it encrypts the stored credentials)")
    if len(settings.secret_key) < 16:
        raise _invalid(None, "secret_key", "must be at least 16 characters")
    if settings.database_timeout <= 0:
        raise _invalid(None, "database_timeout", "must be a positive number of seconds")
    if settings.engine.batch_size < 1:
        raise _invalid("engine", "batch_size", "must be 1 or more")
    if not 0 <= settings.engine.claim_linger <= 1:
        raise _invalid("engine", "claim_linger", "must be from 0 to 1 second")
    if settings.webhooks.max_tries < 1:
        raise _invalid("webhooks", "max_tries", "must be 1 or more")
    try:
        DestinationPolicy.build(settings.webhooks.allowed_destinations, allow_loopback=False)
    except ValueError as exc:
        raise _invalid("webhooks", "allowed_destinations", str(exc)) from None
    if settings.engine.receipt_match_window <= 0:
        raise _invalid("engine", "receipt_match_window", "must be a positive number of seconds")
    # The API's own maximum for validity/ttl, so that no deadline can overflow.
    if not 1 <= settings.engine.default_validity_seconds <= 30 * 86400:
        raise _invalid("engine", "default_validity_seconds",
                       "must be from 1 to 2592000 (30 days)")
    _validate_lookup(settings.lookup)
    bounds = settings.server
    for key in ("max_request_line_bytes", "max_header_bytes", "max_headers", "max_connections",
                "request_timeout", "keep_alive_timeout"):
        if getattr(bounds, key) <= 0:
            raise _invalid("server", key, "must be positive")


LOOKUP_PROVIDERS = ("offline", "sandbox", "http")


def _validate_lookup(lookup: LookupSettings) -> None:
    if lookup.provider not in LOOKUP_PROVIDERS:
        close = difflib.get_close_matches(lookup.provider, LOOKUP_PROVIDERS, n=1)
        raise _invalid("lookup", "provider", f"unknown provider {lookup.provider!r}"
                       + (f"; did you mean {close[0]}?" if close else "")
                       + f" (providers: {', '.join(LOOKUP_PROVIDERS)})")
    if lookup.timeout <= 0:
        raise _invalid("lookup", "timeout", "must be a positive number of seconds")
    if lookup.provider != "http":
        return
    if not lookup.url:
        raise _invalid("lookup", "url", 'required with provider = "http": the HLR service\'s '
                       "endpoint, e.g. https://api.messente.com/v1/hlr/sync")
    if (problem := url_problem(lookup.url, allow_userinfo=False)) is not None:
        raise _invalid("lookup", "url", f"must be an http or https URL ({problem})")
    if lookup.token and lookup.username:
        raise _invalid("lookup", "token", "give a token or a username and password, not both")
    if lookup.password and not lookup.username:
        raise _invalid("lookup", "password", "a password needs a username")
