"""Prometheus metrics of one app instance (its own registry, so tests can run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.results = Counter(
            "hamletnet_results",
            "Result items received, by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "hamletnet_http_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hamletnet_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "hamletnet_storage_errors",
            "Writes or checks the result store refused or could not answer.",
            registry=self.registry,
        )
        self.header_timeouts = Counter(
            "hamletnet_header_timeouts",
            "Connections closed for sending no complete request headers within"
            " limits.header_timeout_s.",
            registry=self.registry,
        )
        self.probes_enabled = Gauge(
            "hamletnet_probes_enabled", "Enabled probes in the registry.", registry=self.registry
        )
