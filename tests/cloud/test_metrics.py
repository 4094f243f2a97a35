"""Telemetry: Prometheus exposition from coordinator events and live state, and the dashboard's history."""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from p2c2r.cloud import ledger
from p2c2r.cloud.coordinator import CACHE_COUNT_MAX_AGE_S, Coordinator
from p2c2r.cloud.metrics import Telemetry
from p2c2r.cloud.store import Store


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def coordinator(tmp_path) -> Iterator[Coordinator]:
    store = Store(tmp_path / "metrics.db")
    store.open()
    try:
        yield Coordinator(store)
    finally:
        store.close()


def samples(telemetry: Telemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser: (name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(telemetry.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scrape, name: str, **labels: str) -> float:
    return scrape[(name, frozenset(labels.items()))]


def test_events_become_counters_and_histograms(coordinator):
    telemetry = Telemetry(coordinator, process_metrics=False)
    emit = coordinator._event
    emit("completed", kind="ai_pathfinding", source="peer", latency_ms=12.0)
    emit("completed", kind="ai_pathfinding", source="peer", latency_ms=30.0)
    emit("completed", kind="ai_pathfinding", source="cache", latency_ms=0.4)
    emit("completed", kind="physics", source="cloud", latency_ms=800.0)
    emit("failed", kind="physics", code="deadline_exceeded")
    emit("invalid_result", peer="peer_x", name="x", kind="physics", reason="wrong")
    emit("fallback", kind="physics", reason="deadline")
    emit("rerouted", kind="ai_pathfinding", peer="peer_y", name="y")
    emit("peer_joined", peer="peer_x", name="x")
    emit("peer_left", peer="peer_x", name="x", rerouted=0)
    emit("cheater_banned", peer="peer_x", name="x", reason="lied")
    emit("audit_failed", peer="peer_x", kind="physics")
    emit("something_new", detail=1)

    scrape = samples(telemetry)
    assert value(scrape, "p2c2r_tasks_finished_total", kind="ai_pathfinding", outcome="peer") == 2
    assert value(scrape, "p2c2r_tasks_finished_total", kind="ai_pathfinding", outcome="cache") == 1
    assert value(scrape, "p2c2r_tasks_finished_total", kind="physics", outcome="cloud") == 1
    assert value(scrape, "p2c2r_tasks_finished_total", kind="physics", outcome="failed") == 1
    assert value(scrape, "p2c2r_tasks_finished_total", kind="rt_reflections", outcome="peer") == 0  # pre-declared
    assert value(scrape, "p2c2r_task_failures_total", kind="physics", code="deadline_exceeded") == 1
    assert value(scrape, "p2c2r_task_latency_seconds_count", kind="ai_pathfinding", source="peer") == 2
    assert value(scrape, "p2c2r_task_latency_seconds_sum", kind="ai_pathfinding", source="peer") == pytest.approx(0.042)
    assert value(scrape, "p2c2r_task_latency_seconds_bucket", kind="ai_pathfinding", source="peer", le="0.025") == 1
    assert value(scrape, "p2c2r_task_latency_seconds_bucket", kind="physics", source="cloud", le="0.5") == 0
    assert value(scrape, "p2c2r_task_latency_seconds_bucket", kind="physics", source="cloud", le="1.0") == 1
    assert value(scrape, "p2c2r_invalid_results_total", kind="physics") == 1
    assert value(scrape, "p2c2r_cloud_fallbacks_total", kind="physics", reason="deadline") == 1
    assert value(scrape, "p2c2r_reroutes_total", kind="ai_pathfinding") == 1
    assert value(scrape, "p2c2r_peers_joined_total") == 1
    assert value(scrape, "p2c2r_peers_left_total") == 1
    assert value(scrape, "p2c2r_cheaters_banned_total") == 1
    assert value(scrape, "p2c2r_audits_failed_total", kind="physics") == 1
    assert value(scrape, "p2c2r_events_total", event="something_new") == 1
    assert value(scrape, "p2c2r_events_total", event="completed") == 4


async def test_live_numbers_and_money_are_read_at_scrape_time(coordinator):
    telemetry = Telemetry(coordinator, process_metrics=False)
    store = coordinator.store
    await store.post(ledger.credit_gamer(key="allowance:g1", gamer_id="g1", amount_micro_usd=1_000_000))
    await store.post(ledger.bill_peer_task(ledger.Tariff(), task_id="t1", gamer_id="g1", peer_ids=["p1"],
                                           price_micro_usd=100))
    await store.post(ledger.bill_coordinator_task(ledger.Tariff(), task_id="t2", gamer_id="g1", source="cloud",
                                                  price_micro_usd=50))
    coordinator.counters.submitted = 7
    coordinator.counters.cache_hits = 2
    coordinator.counters.cache_misses = 5

    scrape = samples(telemetry)
    assert value(scrape, "p2c2r_tasks_submitted_total") == 7
    assert value(scrape, "p2c2r_cache_hits_total") == 2
    assert value(scrape, "p2c2r_cache_misses_total") == 5
    assert value(scrape, "p2c2r_peers_connected") == 0
    assert value(scrape, "p2c2r_queue_depth") == 0
    # The free credit is not revenue: only what the tasks cost.
    assert value(scrape, "p2c2r_gamers_charged_micro_usd") == 150
    fee = 100 * 1_000 // 10_000
    assert value(scrape, "p2c2r_coordinator_fees_micro_usd") == fee
    assert value(scrape, "p2c2r_peers_earned_micro_usd") == 100 - fee
    assert value(scrape, "p2c2r_coordinator_compute_micro_usd") == 50
    assert value(scrape, "p2c2r_ledger_balance_micro_usd") == 0
    info = [k for k in scrape if k[0] == "p2c2r_coordinator_info"]
    assert len(info) == 1 and ("boot_id", coordinator.boot_id) in info[0][1]


def test_each_coordinator_has_its_own_registry(tmp_path):
    stores = [Store(tmp_path / f"{i}.db") for i in range(2)]
    for s in stores:
        s.open()
    try:
        first, second = (Telemetry(Coordinator(s), process_metrics=False) for s in stores)
        first.coordinator._event("completed", kind="physics", source="peer", latency_ms=1.0)
        assert value(samples(first), "p2c2r_tasks_finished_total", kind="physics", outcome="peer") == 1
        assert value(samples(second), "p2c2r_tasks_finished_total", kind="physics", outcome="peer") == 0
        # Nothing leaks into prometheus_client's process-wide default registry.
        assert not any(n.startswith("p2c2r_") for n in prometheus_client.REGISTRY._names_to_collectors)
    finally:
        for s in stores:
            s.close()


def test_a_scrape_survives_a_closed_database(coordinator):
    telemetry = Telemetry(coordinator, process_metrics=False)
    coordinator.store.close()
    scrape = samples(telemetry)
    assert value(scrape, "p2c2r_peers_connected") == 0
    assert not any(k[0] == "p2c2r_ledger_balance_micro_usd" for k in scrape)


def test_close_stops_listening(coordinator):
    telemetry = Telemetry(coordinator, process_metrics=False)
    telemetry.close()
    coordinator._event("completed", kind="physics", source="peer", latency_ms=1.0)
    assert value(samples(telemetry), "p2c2r_tasks_finished_total", kind="physics", outcome="peer") == 0
    assert telemetry.on_event not in coordinator.listeners


def test_recent_history_buckets_rates_and_percentiles(coordinator):
    clock = FakeClock(1_000_000.0)  # a multiple of the bucket size: bucket boundaries are easy to reason about
    telemetry = Telemetry(coordinator, bucket_s=2.0, history_s=20.0, clock=clock, process_metrics=False)
    t0 = clock.t
    for i in range(10):  # 10 physics tasks in the bucket [t0, t0+2), latencies 1..10 ms
        telemetry.on_event({"t": t0 + 0.1 * i, "event": "completed", "kind": "physics", "source": "peer",
                            "latency_ms": float(i + 1)})
    telemetry.on_event({"t": t0 + 4.5, "event": "completed", "kind": "ai_pathfinding", "source": "cache",
                        "latency_ms": 0.5})
    telemetry.on_event({"t": t0 + 4.6, "event": "failed", "kind": "physics", "code": "x"})

    clock.t = t0 + 1.0  # nothing finished yet: the bucket in progress is left out
    recent = telemetry.recent()
    assert len(recent["throughput_per_s"]["peer"]) == 10
    assert sum(recent["throughput_per_s"]["peer"]) == 0

    clock.t = t0 + 6.5  # buckets [t0, t0+2), [t0+2, t0+4), [t0+4, t0+6) are finished
    recent = telemetry.recent()
    peer = recent["throughput_per_s"]["peer"]
    assert len(peer) == 10
    assert peer[-3:] == [5.0, 0.0, 0.0]  # 10 tasks in 2 s
    assert recent["throughput_per_s"]["cache"][-1] == 0.5
    assert recent["throughput_per_s"]["failed"][-1] == 0.5
    assert recent["latency_mean_ms"]["physics"][-3:] == [5.5, None, None]
    assert recent["latency_mean_ms"]["ai_pathfinding"][-1] == 0.5
    assert recent["tasks_per_s"] == pytest.approx(11 / 10.0)  # 10 s rate window
    physics = recent["kinds"]["physics"]
    assert physics["completed"] == 10 and physics["failed"] == 1
    assert physics["p50_ms"] == 5.0 and physics["p95_ms"] == 10.0
    assert recent["end_t"] == t0 + 6.0

    clock.t = t0 + 60.0  # everything has left the 20 s window; totals stay
    recent = telemetry.recent()
    assert sum(recent["throughput_per_s"]["peer"]) == 0
    assert recent["kinds"]["physics"]["recent_n"] == 0 and recent["kinds"]["physics"]["p50_ms"] is None
    assert recent["kinds"]["physics"]["completed"] == 10



async def test_the_cache_count_in_the_stats_is_refreshed_at_most_once_a_second(tmp_path):
    clock = FakeClock()
    store = Store(tmp_path / "stats.db")
    store.open()
    try:
        coordinator = Coordinator(store, clock=clock)
        assert coordinator.public_stats()["cache"]["entries"] == 0
        await store.write(lambda conn: conn.execute(
            "INSERT INTO results (cache_key, kind, version, output, created_at, expires_at) "
            "VALUES ('k', 'physics', '1', x'00', 0, 1e12)"))
        stats = coordinator.public_stats()
        assert stats["cache"]["entries"] == 0  # counted less than CACHE_COUNT_MAX_AGE_S ago
        clock.t += CACHE_COUNT_MAX_AGE_S
        assert coordinator.public_stats()["cache"]["entries"] == 1
    finally:
        store.close()
