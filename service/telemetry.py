"""Prometheus metrics of one app instance, in its own ``CollectorRegistry``.

A per-app registry (not the global default) lets tests build many apps in one process without
"duplicated timeseries" errors, and keeps one app's numbers out of another's ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CacheInfo = Callable[[], dict[str, dict[str, int]]]

# Requests are mostly milliseconds; validations run seconds to minutes.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# HTTP allows any token as a method; labelling each one would let clients create unbounded series.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _CacheCollector(Collector):
    """Reads ``get_cache_info()`` at scrape time, so the numbers are never stale."""

    def __init__(self, cache_info: CacheInfo) -> None:
        self._cache_info = cache_info

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily("smartcash_cache_bytes", "Bytes held by each cache", labels=["cache"])
        bound = GaugeMetricFamily("smartcash_cache_max_bytes", "Byte bound of each cache", labels=["cache"])
        ratio = GaugeMetricFamily(
            "smartcash_cache_hit_ratio",
            "hits / (hits + misses) of each cache (0 before any lookup)",
            labels=["cache"],
        )
        entries = GaugeMetricFamily("smartcash_cache_entries", "Entries in each cache", labels=["cache"])
        for name, info in self._cache_info().items():
            lookups = info.get("hits", 0) + info.get("misses", 0)
            size.add_metric([name], info.get("bytes", 0))
            bound.add_metric([name], info.get("max_bytes", 0))
            ratio.add_metric([name], info.get("hits", 0) / lookups if lookups else 0.0)
            entries.add_metric([name], info.get("entries", 0))
        yield from (size, bound, ratio, entries)


class ServiceTelemetry:
    """The service's metrics; ``render()`` gives the Prometheus text exposition."""

    def __init__(self, cache_info: CacheInfo) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "smartcash_http_request_duration_seconds",
            "HTTP request duration by route and status",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=_REQUEST_BUCKETS,
        )
        self.job_seconds = Histogram(
            "smartcash_validation_job_duration_seconds",
            "Wall time of validation jobs that ran",
            ["status"],
            registry=self.registry,
            buckets=_JOB_BUCKETS,
        )
        self.jobs_total = Counter(
            "smartcash_validation_jobs", "Validation jobs by final status", ["status"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "smartcash_validation_queue_depth",
            "Jobs queued in the job store (all replicas sharing it)",
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "smartcash_models_loaded", "Models bound to a name", registry=self.registry
        )
        self.model_load_seconds = Histogram(
            "smartcash_model_load_seconds",
            "Checkpoint load time (cache hits excluded)",
            registry=self.registry,
            buckets=_LOAD_BUCKETS,
        )
        self.registry.register(_CacheCollector(cache_info))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _KNOWN_METHODS else "other"
        self.request_seconds.labels(method, route, str(status)).observe(seconds)

    def job_finished(self, status: str, seconds: float | None) -> None:
        self.jobs_total.labels(status).inc()
        if seconds is not None:
            self.job_seconds.labels(status).observe(seconds)

    def bind_gauges(self, queue_depth: Callable[[], float], models_loaded: Callable[[], int]) -> None:
        """Gauges read live values at scrape time instead of being pushed on every change."""
        self.queue_depth.set_function(lambda: float(queue_depth()))
        self.models_loaded.set_function(lambda: float(models_loaded()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
