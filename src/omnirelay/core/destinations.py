"""Where webhooks may go: the destination policy, and the pieces of a receiver URL the sender
keys its per-receiver limits on.

A customer chooses the URL, so without a policy the gateway would call whatever it names: its own
API, the cloud metadata service at 169.254.169.254, a database on the private network. The policy
is applied to every address a host name resolves to, at send time (see engine/webhooks.py, which
connects only to the addresses checked here).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?"
                        r"(\.[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?)*$")


class DestinationRefused(Exception):
    """The policy refuses this receiver: a configuration matter, not a passing failure."""


def special_use(address: Address) -> str | None:
    """Why an address is not an ordinary public one, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return "unique-local"
    if address.is_private:
        return "private"
    if not address.is_global or address.is_reserved:
        return "not globally routable"
    return None


def normal_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def looks_like_address(host: str) -> bool:
    """The host names that an HTTP client connects to without asking DNS (IPv6 has a colon,
    IPv4 is digits and dots), so the policy must check them itself."""
    return ":" in host or host.replace(".", "").isdigit()


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    allow_loopback: bool = False
    hosts: frozenset[str] = frozenset()  # exact names, normalised
    networks: tuple[Network, ...] = ()

    @classmethod
    def build(cls, allowed: Iterable[str], *, allow_loopback: bool) -> DestinationPolicy:
        """`allowed`: host names and networks (CIDR or single addresses). ValueError names the
        first entry that is neither."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in allowed:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
                continue
            except ValueError:
                pass
            name = normal_host(entry)
            if not _HOST_NAME.match(name) or looks_like_address(name):
                raise ValueError(f"{entry!r} is neither a host name nor a network (CIDR)")
            hosts.add(name)
        return cls(allow_loopback, frozenset(hosts), tuple(networks))

    def refusal(self, host: str, address: Address) -> str | None:
        """Why `host`, resolved to `address`, may not be called; None when it may."""
        if normal_host(host) in self.hosts:
            return None
        mapped = (address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None)
        if any(address in net or (mapped is not None and mapped in net) for net in self.networks):
            return None
        reason = special_use(address)
        if reason is None or (reason == "loopback" and self.allow_loopback):
            return None
        shown = host if normal_host(host) == str(address) else f"{host} resolves to {address}"
        return f"{shown}, a {reason} address"


def receiver_host(url: str) -> str:
    """host[:port] of a receiver, for logs and the per-receiver limit: never the userinfo, path
    or query, which can carry credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "?"
    return f"{host}:{port}" if port else host


def url_origin(url: str) -> str:
    """The URL up to the end of its authority, exactly as written (scheme://[userinfo@]host[:port]),
    so that the store can tell which queued rows go to a receiver by comparing prefixes."""
    start = url.find("://")
    if start < 0:
        return url
    rest = url[start + 3:]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return url[: start + 3 + end]


def without_userinfo(url: str) -> str:
    """A URL as it may be logged or stored as an error: any user:password@ removed."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
