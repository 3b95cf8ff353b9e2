"""Prometheus metrics: one registry per service, served over HTTP.

The RPC interceptor records counts and latency by method and status; domain code uses the
hooks below for cache hits, sync results and backlogs.
"""

from __future__ import annotations

from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.rpc_total = Counter(
            "syncsuite_rpc_total", "RPCs handled", ["method", "code"], registry=self.registry
        )
        self.rpc_seconds = Histogram(
            "syncsuite_rpc_seconds", "RPC latency", ["method", "code"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.cache_events = Counter(
            "syncsuite_cache_events_total", "Cache lookups by tier and result",
            ["cache", "result"], registry=self.registry,
        )
        self.sync_runs = Counter(
            "syncsuite_sync_runs_total", "Sync jobs by scope and final status",
            ["scope", "status"], registry=self.registry,
        )
        self.sync_records = Counter(
            "syncsuite_sync_records_total", "Records handled by sync jobs",
            ["scope", "outcome"], registry=self.registry,
        )
        self.sync_seconds = Histogram(
            "syncsuite_sync_seconds", "Sync job duration", ["scope"], registry=self.registry
        )
        self.backlog = Gauge(
            "syncsuite_backlog", "Items waiting to be synced, by target", ["target"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        # children by label values, looked up once: labels() takes a lock and builds a key,
        # which on a hot path costs more than the count itself
        self._rpc_series: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._cache_series: dict[tuple[str, str], Any] = {}

    def rpc_done(self, method: str, code: str, seconds: float) -> None:
        series = self._rpc_series.get((method, code))
        if series is None:
            series = self._rpc_series[(method, code)] = (
                self.rpc_total.labels(method, code), self.rpc_seconds.labels(method, code))
        series[0].inc()
        series[1].observe(seconds)

    def cache_hit(self, cache: str, result: str = "hit") -> None:
        child = self._cache_series.get((cache, result))
        if child is None:
            child = self._cache_series[(cache, result)] = self.cache_events.labels(cache, result)
        child.inc()

    def serve(self, host: str, port: int) -> int:
        """Serves /metrics in a background thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
