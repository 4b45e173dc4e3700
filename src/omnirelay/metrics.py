"""Prometheus metrics, one registry per runtime (tests build many runtimes in one process).

Counters are bumped where the work happens; queue depths are read from the store when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# (connector, role) -> 1 when that bind is up, else 0; read when /metrics is scraped
BindStates = Callable[[], Mapping[tuple[str, str], int]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.accepted = Counter("omnirelay_omnimessages_accepted", "Omnimessages accepted",
                                ["surface"], registry=self.registry)
        self.sent = Counter("omnirelay_attempts_sent", "Attempts handed to an upstream",
                            ["channel", "outcome"], registry=self.registry)
        self.statuses = Counter("omnirelay_statuses_reported", "Status reports from upstreams",
                                ["channel"], registry=self.registry)
        self.webhooks = Counter("omnirelay_webhooks", "Webhook deliveries by result",
                                ["kind", "result"], registry=self.registry)
        self.task_restarts = Counter("omnirelay_task_restarts",
                                     "Supervised tasks restarted after a failure", ["task"],
                                     registry=self.registry)
        self.unit_failures = Counter("omnirelay_unit_failures",
                                     "Units of a batched write the database refused on their own",
                                     ["kind"], registry=self.registry)
        self.store_unavailable = Counter("omnirelay_store_unavailable",
                                         "Requests answered 503 because the database was "
                                         "unavailable", ["surface"], registry=self.registry)
        self.unmatched_receipts = Counter(
            "omnirelay_receipts_unmatched",
            "Receipts that matched no message: parked (no message holds their id yet), dropped "
            "(they predate the message that now holds it) or expired (still unmatched after "
            "engine.receipt_match_window)", ["channel", "outcome"], registry=self.registry)
        self.unowned_inbound = Counter("omnirelay_inbound_unowned",
                                       "Inbound messages to a number no account owns (stored "
                                       "without an account)", ["channel"], registry=self.registry)
        self.retention_purged = Counter("omnirelay_retention_purged",
                                        "Rows deleted by [retention]: omnimessages (with their "
                                        "attempts and events), inbound, webhooks, "
                                        "idempotency_keys, verifications", ["kind"],
                                        registry=self.registry)
        self._bind_sources: list[BindStates] = []
        self.registry.register(_BindCollector(self._bind_sources))
        self.send_seconds = Histogram("omnirelay_upstream_send_seconds",
                                      "Time an upstream took to answer a batch", ["provider"],
                                      registry=self.registry)

    def watch_binds(self, source: BindStates) -> None:
        """Report `source`'s binds as omnirelay_smpp_bind_up{connector, role}."""
        self._bind_sources.append(source)


class _BindCollector(Collector):
    """Bind states are read from the connectors when scraped, not pushed from where binds change:
    the gauge cannot miss a transition and the link code needs no metrics of its own."""

    def __init__(self, sources: list[BindStates]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("omnirelay_smpp_bind_up",
                                  "1 when the SMPP bind (connector, role: trx, tx or rx) is up",
                                  labels=["connector", "role"])
        for source in self.sources:
            for (connector, role), up in sorted(source().items()):
                gauge.add_metric([connector, role], up)
        yield gauge
