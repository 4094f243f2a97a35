"""Observability for one coordinator: Prometheus metrics and the recent history the dashboard draws.

``Telemetry`` listens to the coordinator's events (``coordinator.listeners``) and keeps, per coordinator
and never in module state:

* a private ``CollectorRegistry`` for ``GET /metrics``: event counters and latency histograms, plus a
  collector that reads live numbers (queue, peers, cache) and the ledger from the store at scrape time;
* a short history in fixed time buckets (throughput by source, mean latency by kind) and a window of
  recent latencies per kind, which the dashboard and ``/api/stats`` show as ``recent``.

Only the event loop thread touches it (listeners are called from the coordinator's loop).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from p2c2r import __version__
from p2c2r.cloud import ledger
from p2c2r.errors import StoreError
from p2c2r.tasks import registry

if TYPE_CHECKING:
    from p2c2r.cloud.coordinator import Coordinator

# History the dashboard's charts show: BUCKET_S-second buckets over HISTORY_S seconds.
BUCKET_S = 2.0
HISTORY_S = 300.0
# "tasks/s" on the dashboard: completions over this many seconds of finished buckets.
RATE_WINDOW_S = 10.0
# Latency percentiles per kind are taken over at most this many recent tasks, within HISTORY_S.
LATENCY_SAMPLES = 2_000
# Seconds; covers cache hits (sub-millisecond) up to the longest deadlines.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SOURCES = ("peer", "cache", "cloud")


@dataclass(slots=True)
class _Bucket:
    index: int
    by_source: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    latency_sum: Counter[str] = field(default_factory=Counter)
    latency_n: Counter[str] = field(default_factory=Counter)


class Telemetry:
    def __init__(
        self,
        coordinator: Coordinator,
        *,
        bucket_s: float = BUCKET_S,
        history_s: float = HISTORY_S,
        clock: Callable[[], float] = time.time,
        process_metrics: bool = True,
    ) -> None:
        self.coordinator = coordinator
        self.bucket_s = bucket_s
        self.history_buckets = max(1, int(round(history_s / bucket_s)))
        self._clock = clock
        self._buckets: deque[_Bucket] = deque(maxlen=self.history_buckets + 1)
        self._latencies: dict[str, deque[tuple[float, float]]] = {}
        self.completed_by_kind: Counter[str] = Counter()
        self.failed_by_kind: Counter[str] = Counter()

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks_finished = PromCounter(
            "p2c2r_tasks_finished", "Tasks finished, by kind and outcome (peer, cache or cloud when completed; failed)",
            ["kind", "outcome"], registry=r)
        self.task_failures = PromCounter("p2c2r_task_failures", "Failed tasks by kind and error code",
                                         ["kind", "code"], registry=r)
        self.latency = Histogram("p2c2r_task_latency_seconds",
                                 "Time from submission to result, by kind and where the result came from",
                                 ["kind", "source"], buckets=LATENCY_BUCKETS, registry=r)
        self.invalid_results = PromCounter("p2c2r_invalid_results", "Peer results rejected by verification, by kind",
                                           ["kind"], registry=r)
        self.fallbacks = PromCounter("p2c2r_cloud_fallbacks", "Tasks the coordinator computed itself, by kind and reason",
                                     ["kind", "reason"], registry=r)
        self.reroutes = PromCounter("p2c2r_reroutes", "Tasks sent to another peer after the first one, by kind",
                                    ["kind"], registry=r)
        self.peers_joined = PromCounter("p2c2r_peers_joined", "Peer connections accepted", registry=r)
        self.peers_left = PromCounter("p2c2r_peers_left", "Peer connections ended", registry=r)
        self.cheaters_banned = PromCounter("p2c2r_cheaters_banned", "Peers banned for cheating", registry=r)
        self.audits_failed = PromCounter("p2c2r_audits_failed", "Audits of accepted results that found a bad result",
                                         ["kind"], registry=r)
        self.events = PromCounter("p2c2r_events", "Coordinator events by name", ["event"], registry=r)
        for kind in sorted(registry()):  # zeros from the start, so rates work from the first scrape
            for outcome in (*SOURCES, "failed"):
                self.tasks_finished.labels(kind, outcome)
            self.invalid_results.labels(kind)
        r.register(_LiveCollector(coordinator))
        if process_metrics:
            ProcessCollector(registry=r)

        coordinator.listeners.append(self.on_event)

    def close(self) -> None:
        if self.on_event in self.coordinator.listeners:
            self.coordinator.listeners.remove(self.on_event)

    # Events -----------------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        name = str(event.get("event", "?"))
        self.events.labels(name).inc()
        kind = str(event.get("kind", "?"))
        if name == "completed":
            source = str(event.get("source", "?"))
            latency_ms = float(event.get("latency_ms", 0.0))
            self.tasks_finished.labels(kind, source).inc()
            self.latency.labels(kind, source).observe(latency_ms / 1000.0)
            self.completed_by_kind[kind] += 1
            bucket = self._bucket(event)
            bucket.by_source[source] += 1
            bucket.latency_sum[kind] += latency_ms
            bucket.latency_n[kind] += 1
            window = self._latencies.setdefault(kind, deque(maxlen=LATENCY_SAMPLES))
            window.append((float(event.get("t", self._clock())), latency_ms))
        elif name == "failed":
            self.tasks_finished.labels(kind, "failed").inc()
            self.task_failures.labels(kind, str(event.get("code", "?"))).inc()
            self.failed_by_kind[kind] += 1
            self._bucket(event).failed += 1
        elif name == "invalid_result":
            self.invalid_results.labels(kind).inc()
        elif name == "fallback":
            self.fallbacks.labels(kind, str(event.get("reason", "?"))).inc()
        elif name == "rerouted":
            self.reroutes.labels(kind).inc()
        elif name == "peer_joined":
            self.peers_joined.inc()
        elif name == "peer_left":
            self.peers_left.inc()
        elif name == "cheater_banned":
            self.cheaters_banned.inc()
        elif name == "audit_failed":
            self.audits_failed.labels(kind).inc()

    def _bucket(self, event: dict[str, Any]) -> _Bucket:
        index = int(float(event.get("t", self._clock())) // self.bucket_s)
        if self._buckets and self._buckets[-1].index == index:
            return self._buckets[-1]
        if self._buckets and self._buckets[-1].index > index:  # a late event (clock step): count it in the newest
            return self._buckets[-1]
        bucket = _Bucket(index)
        self._buckets.append(bucket)
        return bucket

    # Reading ----------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of this coordinator's registry."""
        return generate_latest(self.registry)

    def recent(self) -> dict[str, Any]:
        """History for the charts, tasks/s and latency percentiles; part of every stats snapshot."""
        now = self._clock()
        current = int(now // self.bucket_s)
        # Finished buckets only: the one in progress would always look like a dip.
        first = current - self.history_buckets
        by_index = {b.index: b for b in self._buckets}
        throughput: dict[str, list[float]] = {s: [] for s in (*SOURCES, "failed")}
        kinds = sorted(set(self.completed_by_kind) | set(self.failed_by_kind))
        latency: dict[str, list[float | None]] = {k: [] for k in kinds}
        for index in range(first, current):
            bucket = by_index.get(index)
            for s in SOURCES:
                throughput[s].append(round(bucket.by_source[s] / self.bucket_s, 3) if bucket else 0.0)
            throughput["failed"].append(round(bucket.failed / self.bucket_s, 3) if bucket else 0.0)
            for k in kinds:
                n = bucket.latency_n[k] if bucket else 0
                latency[k].append(round(bucket.latency_sum[k] / n, 2) if bucket and n else None)
        rate_buckets = max(1, int(round(RATE_WINDOW_S / self.bucket_s)))
        done = sum(sum(by_index[i].by_source.values()) for i in range(current - rate_buckets, current) if i in by_index)
        cutoff = now - self.history_buckets * self.bucket_s
        per_kind: dict[str, Any] = {}
        for k in kinds:
            samples = sorted(ms for t, ms in self._latencies.get(k, ()) if t >= cutoff)
            per_kind[k] = {
                "completed": self.completed_by_kind[k],
                "failed": self.failed_by_kind[k],
                "recent_n": len(samples),
                "p50_ms": _percentile(samples, 0.50),
                "p95_ms": _percentile(samples, 0.95),
            }
        return {
            "bucket_s": self.bucket_s,
            "end_t": round(current * self.bucket_s, 3),
            "tasks_per_s": round(done / (rate_buckets * self.bucket_s), 3),
            "throughput_per_s": throughput,
            "latency_mean_ms": latency,
            "kinds": per_kind,
        }


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 2)


class _LiveCollector(Collector):
    """Numbers read at scrape time: what is happening now, and the money, from the ledger."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def describe(self) -> list[Metric]:  # names are static; do not read the store at registration
        return []

    def collect(self) -> Iterator[Metric]:
        c = self.coordinator
        counters = c.counters

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        info = GaugeMetricFamily("p2c2r_coordinator_info", "Version and boot id of this coordinator",
                                 labels=["version", "boot_id"])
        info.add_metric([__version__, c.boot_id], 1)
        yield info
        yield gauge("p2c2r_uptime_seconds", "Seconds since the coordinator started", time.time() - c.started_at)
        yield counter("p2c2r_tasks_submitted", "Tasks accepted from gamers", counters.submitted)
        yield counter("p2c2r_cache_hits", "Tasks answered from the result cache", counters.cache_hits)
        yield counter("p2c2r_cache_misses", "Tasks not found in the result cache", counters.cache_misses)
        yield counter("p2c2r_bad_messages", "Malformed or unexpected messages received", counters.bad_messages)
        yield counter("p2c2r_backlog_closes", "Connections closed for not reading their messages",
                      counters.backlog_closes)
        yield gauge("p2c2r_queue_depth", "Tasks waiting for a free peer slot", c.scheduler.queue_depth)
        yield gauge("p2c2r_tasks_in_flight", "Attempts running on peers", c.scheduler.in_flight)
        yield gauge("p2c2r_tasks_active", "Tasks accepted and not yet finished", len(c.tasks))
        yield gauge("p2c2r_peers_connected", "Peers connected now", len(c.peers))
        yield gauge("p2c2r_peer_slots", "Task slots offered by connected peers", sum(p.slots for p in c.peers.values()))
        yield gauge("p2c2r_gamers_connected", "Gamers connected now", len(c.gamers))
        try:
            balances = c.store.balances()
            cache_entries = c.store.cache_entries(time.time())
        except StoreError:  # a scrape must not fail because the database is busy or closed
            return
        yield gauge("p2c2r_cache_entries", "Results in the cache", cache_entries)
        charged = -(balances.get(ledger.FUNDING_ACCOUNT, 0) + sum(v for a, v in balances.items() if a.startswith("gamer:")))
        earned = sum(v for a, v in balances.items() if a.startswith("peer:"))
        yield gauge("p2c2r_gamers_charged_micro_usd", "Total charged to gamers, micro-USD", charged)
        yield gauge("p2c2r_peers_earned_micro_usd", "Total earned by peers, micro-USD", earned)
        yield gauge("p2c2r_coordinator_fees_micro_usd", "Coordinator fees collected, micro-USD",
                    balances.get(ledger.FEES_ACCOUNT, 0))
        yield gauge("p2c2r_coordinator_compute_micro_usd", "Earned by the coordinator's own compute (cache, fallback)",
                    balances.get(ledger.COMPUTE_ACCOUNT, 0))
        yield gauge("p2c2r_ledger_balance_micro_usd", "Sum of every ledger entry; anything but 0 is a bug",
                    sum(balances.values()))
