"""`[providers.smpp]` settings: the connectors (SMSC binds) and the routes that pick them.

    [[providers.smpp.connectors]]
    name = "a"                    # required, unique
    host = "smsc.example.net"     # required
    port = 2775
    system_id = "esme1"           # required
    password = ""
    system_type = ""
    bind = "transceiver"          # or "transmitter+receiver" (two binds)
    source_ton = "auto"           # auto: alphanumeric sender -> 5/0, +digits or >8 digits -> 1/1,
    source_npi = "auto"           #       short code -> 0/1; or an integer
    dest_ton = 1                  # the leading + is stripped when dest_ton is 1
    dest_npi = 1
    window = 10                   # outstanding submit_sm per bind
    rate_limit = 0.0              # submit_sm per second, token bucket; 0 = unlimited
    enquire_link_interval = 30.0
    response_timeout = 10.0       # submit_sm_resp / enquire_link_resp wait, seconds
    bind_timeout = 10.0
    reconnect_min = 1.0           # reconnect back-off, doubling up to reconnect_max
    reconnect_max = 60.0
    throttle_pause_min = 1.0      # pause after ESME_RTHROTTLED / ESME_RMSGQFUL, doubling up to max
    throttle_pause_max = 30.0
    retry_within = 5.0            # how long one send keeps retrying throttled parts before giving up
    retry_after = 10.0            # the retry_after reported when a message could not go out now
    registered_delivery = 1
    service_type = ""
    receipt_id_base = "same"      # "same", or "dec"/"hex" when receipt ids use another base
    multipart_receipts = "every"  # which part receipts decide a long SMS: every, any, first, last
    ref_scope = "<system_id>@<host>:<port>"  # provider_ref prefix; same value = same SMSC account
    tls = false
    tls_ca_file = ""              # default: the system's trust store
    tls_cert_file = ""            # client certificate (optional) and its key
    tls_key_file = ""
    tls_verify = true

    routes = [{prefix = "+372", connectors = ["a", "b"]}, {prefix = "", connectors = ["b"]}]

Routes are tried in order; the first whose prefix starts the destination (E.164, with +) decides, and
its connectors are tried in order (failover when one is down). Without routes every connector serves
every destination, in the order declared.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omnirelay.core import multipart
from omnirelay.errors import ConfigError

_BIND_MODES = {"transceiver": "transceiver", "trx": "transceiver",
               "transmitter+receiver": "transmitter+receiver", "tx+rx": "transmitter+receiver"}
_ID_BASES = {"same": None, "dec": 10, "decimal": 10, "hex": 16, "hexadecimal": 16}


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    name: str
    host: str
    system_id: str
    port: int = 2775
    password: str = ""
    system_type: str = ""
    bind: str = "transceiver"
    source_ton: int | None = None
    source_npi: int | None = None
    dest_ton: int = 1
    dest_npi: int = 1
    window: int = 10
    rate_limit: float = 0.0
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    bind_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    throttle_pause_min: float = 1.0
    throttle_pause_max: float = 30.0
    retry_within: float = 5.0
    retry_after: float = 10.0
    registered_delivery: int = 1
    service_type: str = ""
    receipt_id_base: int | None = None
    multipart_receipts: str = "every"
    submit_id_base: int = 16
    ref_scope: str = ""
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify: bool = True

    @property
    def scope(self) -> str:
        return self.ref_scope or f"{self.system_id}@{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file or None)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.tls_cert_file:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file or None)
        return context


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    connectors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SmppSettings:
    connectors: tuple[ConnectorSettings, ...]
    routes: tuple[Route, ...] = ()

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SmppSettings:
        """Validate `[providers.smpp]`; raises ConfigError naming the offending setting."""
        if not isinstance(raw, Mapping):
            raise ConfigError("providers.smpp must be a table")
        unknown = set(raw) - {"connectors", "routes"}
        if unknown:
            raise ConfigError(f"providers.smpp: unknown setting(s) {', '.join(sorted(unknown))}")
        items = raw.get("connectors")
        if not isinstance(items, Sequence) or isinstance(items, str) or not items:
            raise ConfigError("providers.smpp.connectors must be a non-empty list of tables")
        connectors = tuple(_connector(item, index) for index, item in enumerate(items))
        names = [connector.name for connector in connectors]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"providers.smpp.connectors: duplicate name(s) {', '.join(duplicates)}")
        routes = _routes(raw.get("routes", ()), set(names))
        return cls(connectors, routes)


_FIELDS = {name for name in ConnectorSettings.__dataclass_fields__ if name != "submit_id_base"}


def _connector(item: Any, index: int) -> ConnectorSettings:
    where = f"providers.smpp.connectors[{index}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where} must be a table")
    unknown = set(item) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key in ("name", "host", "system_id"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}.{key} is required (a non-empty string)")
        values[key] = value.strip()
    where = f"providers.smpp.connectors.{values['name']}"
    for key in ("password", "system_type", "service_type", "ref_scope", "tls_ca_file", "tls_cert_file",
                "tls_key_file"):
        if key in item:
            values[key] = _string(item[key], f"{where}.{key}")
    if len(values["system_id"]) > 15:
        raise ConfigError(f"{where}.system_id is at most 15 characters (SMPP 3.4)")
    if "bind" in item:
        mode = _BIND_MODES.get(str(item["bind"]).strip().lower())
        if mode is None:
            raise ConfigError(f"{where}.bind must be 'transceiver' or 'transmitter+receiver', "
                              f"not {item['bind']!r}")
        values["bind"] = mode
    for key, low, high in (("port", 1, 65535), ("window", 1, 1000), ("dest_ton", 0, 6),
                           ("dest_npi", 0, 18), ("registered_delivery", 0, 31)):
        if key in item:
            values[key] = _int(item[key], f"{where}.{key}", low, high)
    for key, (low, high) in (("source_ton", (0, 6)), ("source_npi", (0, 18))):
        if key in item and item[key] != "auto":
            values[key] = _int(item[key], f"{where}.{key}", low, high)
    for key in ("rate_limit", "enquire_link_interval", "response_timeout", "bind_timeout",
                "reconnect_min", "reconnect_max", "throttle_pause_min", "throttle_pause_max",
                "retry_within", "retry_after"):
        if key in item:
            values[key] = _float(item[key], f"{where}.{key}", zero_ok=key in ("rate_limit", "retry_within"))
    for key in ("tls", "tls_verify"):
        if key in item:
            if not isinstance(item[key], bool):
                raise ConfigError(f"{where}.{key} must be true or false")
            values[key] = item[key]
    if "multipart_receipts" in item:
        rule = str(item["multipart_receipts"]).strip().lower()
        if rule not in multipart.RULES:
            raise ConfigError(f"{where}.multipart_receipts must be one of "
                              f"{', '.join(multipart.RULES)}, not {item['multipart_receipts']!r}")
        values["multipart_receipts"] = rule
    if "receipt_id_base" in item:
        base = str(item["receipt_id_base"]).strip().lower()
        if base not in _ID_BASES:
            raise ConfigError(f"{where}.receipt_id_base must be 'same', 'dec' or 'hex'")
        values["receipt_id_base"] = _ID_BASES[base]
        # A receipt base that differs names the submit_sm_resp base by implication.
        values["submit_id_base"] = 16 if _ID_BASES[base] == 10 else 10
    settings = ConnectorSettings(**values)
    if settings.reconnect_max < settings.reconnect_min:
        raise ConfigError(f"{where}.reconnect_max must be at least reconnect_min")
    if settings.throttle_pause_max < settings.throttle_pause_min:
        raise ConfigError(f"{where}.throttle_pause_max must be at least throttle_pause_min")
    if settings.tls_key_file and not settings.tls_cert_file:
        raise ConfigError(f"{where}.tls_key_file needs tls_cert_file")
    return settings


def _routes(raw: Any, names: set[str]) -> tuple[Route, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ConfigError("providers.smpp.routes must be a list of {prefix, connectors} tables")
    routes: list[Route] = []
    for index, item in enumerate(raw):
        where = f"providers.smpp.routes[{index}]"
        if not isinstance(item, Mapping) or set(item) - {"prefix", "connectors"}:
            raise ConfigError(f"{where} must be a table with prefix and connectors only")
        prefix = _string(item.get("prefix", ""), f"{where}.prefix")
        chosen = item.get("connectors")
        if (not isinstance(chosen, Sequence) or isinstance(chosen, str) or not chosen
                or not all(isinstance(name, str) for name in chosen)):
            raise ConfigError(f"{where}.connectors must be a non-empty list of connector names")
        missing = [name for name in chosen if name not in names]
        if missing:
            raise ConfigError(f"{where}.connectors: no connector named {', '.join(missing)}")
        routes.append(Route(prefix, tuple(chosen)))
    return tuple(routes)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be an integer from {low} to {high}, not {value!r}")
    return value


def _float(value: Any, where: str, *, zero_ok: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number of seconds (or per second), not {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{where} must be {'at least 0' if zero_ok else 'greater than 0'}, not {value!r}")
    return float(value)
