"""HTTP routes and the /live feed, in process: health, redaction, assets, metrics, snapshots and events."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Request

from p2c2r.cloud.coordinator import Coordinator
from p2c2r.cloud.http import HttpRoutes
from p2c2r.cloud.live import redact_event
from p2c2r.cloud.store import Store
from tests.procs import scaled

TOKEN = "s3cret-admin-token"


@pytest.fixture
def routes(tmp_path) -> Iterator[HttpRoutes]:
    store = Store(tmp_path / "http.db")
    store.open()
    coordinator = Coordinator(store)
    coordinator.admin_token = TOKEN
    try:
        yield HttpRoutes(coordinator)
    finally:
        store.close()


def get(routes: HttpRoutes, path: str, headers: dict[str, str] | None = None):
    return routes(None, Request(path, Headers(headers or {})))  # type: ignore[arg-type]


async def add_gamer(routes: HttpRoutes, gamer_id: str, name: str) -> None:
    await routes.coordinator.store.upsert_gamer(gamer_id, name)


def test_healthz_is_503_once_the_database_writer_stops(routes):
    ok = get(routes, "/healthz")
    assert (ok.status_code, ok.body) == (200, b"ok\n")
    routes.coordinator.store.close()
    down = get(routes, "/healthz")
    assert down.status_code == 503 and b"not writable" in down.body


async def test_api_stats_shows_gamer_identities_to_the_admin_only(routes):
    await add_gamer(routes, "gamer_aaa111", "Zelda Incognito")
    public = get(routes, "/api/stats")
    assert public.status_code == 200 and public.headers["Content-Type"] == "application/json"
    stats = json.loads(public.body)
    assert stats["gamers"] == {"connected": 0, "known": 1}
    assert b"Zelda" not in public.body and b"gamer_aaa111" not in public.body
    for name, headers, path in [
        ("bearer", {"Authorization": f"Bearer {TOKEN}"}, "/api/stats"),
        ("query", {}, f"/api/stats?token={TOKEN}"),
    ]:
        admin = json.loads(get(routes, path, headers).body)
        assert admin["gamers"]["list"] == [{"id": "gamer_aaa111", "name": "Zelda Incognito", "connected": False,
                                            "tasks": 0, "spent_micro_usd": 0, "balance_micro_usd": 0}], name
    for wrong in ({"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        assert b"Zelda" not in get(routes, "/api/stats", wrong).body
    assert b"Zelda" not in get(routes, "/api/stats?token=nope").body


def test_api_stats_carries_history_and_the_event_feed(routes):
    routes.coordinator._event("peer_joined", peer="peer_1", name="rig")
    routes.coordinator._event("completed", kind="physics", source="peer", latency_ms=3.0)
    stats = json.loads(get(routes, "/api/stats").body)
    assert stats["recent"]["kinds"]["physics"]["completed"] == 1
    assert [e["event"] for e in stats["events"]] == ["peer_joined"]  # completions are counted, not listed


def test_no_admin_token_means_no_admin(routes):
    routes.coordinator.admin_token = None
    assert not routes.is_admin(Request("/api/stats?token=", Headers({"Authorization": "Bearer "})))


def test_metrics_endpoint_speaks_prometheus(routes):
    response = get(routes, "/metrics")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.body.decode())}
    assert {"p2c2r_tasks_finished", "p2c2r_task_latency_seconds", "p2c2r_queue_depth", "p2c2r_peers_connected",
            "p2c2r_cache_hits", "p2c2r_gamers_charged_micro_usd"} <= names


def test_dashboard_assets_are_shipped_and_local(routes):
    page = get(routes, "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.body.decode()
    for path in re.findall(r'(?:src|href)="(/[^"]*)"', html):
        asset = get(routes, path)
        assert asset.status_code == 200, path
    for path in ("/", "/dashboard.js", "/dashboard.css"):
        body = get(routes, path).body.decode()
        assert not re.search(r"(?:src|href)=\"https?:|url\(\s*['\"]?https?:|@import|//cdn", body), path
    assert get(routes, "/nothing-here").status_code == 404


def test_anonymous_events_lose_gamer_fields():
    event = {"t": 1.0, "event": "gamer_joined", "gamer": "gamer_1", "gamer_name": "Zed", "kind": "physics"}
    assert redact_event(event, admin=False) == {"t": 1.0, "event": "gamer_joined", "kind": "physics"}
    assert redact_event(event, admin=True) == event


# The /live feed over a real WebSocket, with a server that only knows that path --------------------------


@pytest.fixture
async def live_server(routes) -> AsyncIterator[tuple[HttpRoutes, str]]:
    routes.live.interval_s = 3600.0  # snapshots are pushed by the test (broadcast_snapshot), not by time

    async def handler(ws):
        await routes.serve_live(ws)

    async with serve(handler, "127.0.0.1", 0, process_request=routes) as server:
        port = server.sockets[0].getsockname()[1]
        yield routes, f"ws://127.0.0.1:{port}/live"
        await routes.close()


async def recv_json(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))


async def test_live_feed_sends_hello_events_and_snapshots(live_server):
    routes, url = live_server
    await add_gamer(routes, "gamer_bbb222", "Secret Sam")
    routes.coordinator._event("peer_joined", peer="peer_1", name="rig-one")
    async with websockets.connect(url) as anon, websockets.connect(f"{url}?token={TOKEN}") as admin:
        hello = await recv_json(anon)
        assert hello["type"] == "hello" and hello["admin"] is False
        assert [e["name"] for e in hello["events"]] == ["rig-one"]
        assert "list" not in hello["stats"]["gamers"]
        admin_hello = await recv_json(admin)
        assert admin_hello["admin"] is True
        assert admin_hello["stats"]["gamers"]["list"][0]["name"] == "Secret Sam"

        routes.coordinator._event("completed", kind="physics", source="peer", latency_ms=2.0)  # not pushed
        routes.coordinator._event("gamer_left", gamer="gamer_bbb222")
        event = await recv_json(anon)
        assert event == {"type": "event", "event": {"t": event["event"]["t"], "event": "gamer_left"}}
        assert (await recv_json(admin))["event"]["gamer"] == "gamer_bbb222"

        routes.live.broadcast_snapshot()
        snapshot = await recv_json(anon)
        assert snapshot["type"] == "snapshot"
        assert snapshot["stats"]["recent"]["kinds"]["physics"]["completed"] == 1
        assert "Secret Sam" not in json.dumps(snapshot)
        assert "Secret Sam" in json.dumps(await recv_json(admin))
        assert routes.live.viewers == 2

        await routes.live.close()
        await asyncio.wait_for(anon.wait_closed(), scaled(10))
        assert anon.close_code == 1001
    assert routes.live.viewers == 0
