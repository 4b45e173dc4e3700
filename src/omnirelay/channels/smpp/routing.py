"""Which connector sends a destination: the first route whose prefix starts the number decides, and
its connectors are tried in order. A connector that is down is skipped (failover); one that is up but
paused by throttling is passed over for an unpaused one, and used when all are paused (its parts then
wait out the pause). Without routes, every connector serves every number, in declared order.
"""

from __future__ import annotations

from collections.abc import Sequence

from omnirelay.channels.smpp.connector import Connector
from omnirelay.channels.smpp.settings import Route


class Router:
    def __init__(self, routes: Sequence[Route], connectors: Sequence[Connector]) -> None:
        self._by_name = {connector.name: connector for connector in connectors}
        self._routes = tuple(routes) or (Route("", tuple(self._by_name)),)

    def routes_for(self, destination: str) -> tuple[Connector, ...]:
        number = destination.strip()
        for route in self._routes:
            if number.startswith(route.prefix):
                return tuple(self._by_name[name] for name in route.connectors)
        return ()

    def pick(self, destination: str) -> Connector | None:
        candidates = [connector for connector in self.routes_for(destination) if connector.is_up]
        for connector in candidates:
            if not connector.is_paused:
                return connector
        return candidates[0] if candidates else None

    def retry_after(self, destination: str) -> float:
        """How long to wait when no connector of the route is up: the shortest of their settings."""
        return min((c.settings.retry_after for c in self.routes_for(destination)), default=10.0)
