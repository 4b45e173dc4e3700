"""Prometheus metrics, one registry per runtime (tests build many runtimes in one process).

Counters are bumped where the work happens; queue depths are read from the store when scraped.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
        self.retention_purged = Counter("omnirelay_retention_purged",
                                        "Rows deleted by [retention]: omnimessages (with their "
                                        "attempts and events), inbound, webhooks", ["kind"],
                                        registry=self.registry)
        self.send_seconds = Histogram("omnirelay_upstream_send_seconds",
                                      "Time an upstream took to answer a batch", ["provider"],
                                      registry=self.registry)
