"""The coordinator's observability on its own port, end to end: /api/stats and /metrics after a known run, and
the dashboard in a real headless Chromium (Playwright) that must follow the network live, without reloading."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sqlite3
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from p2c2r.gamer.client import GamerClient
from p2c2r.tasks import get_kind
from tests.procs import REPO, CloudProcess, scaled

# Long enough for peers to answer; short enough that a task whose peer was dropped (a starved CI machine
# misses heartbeats) falls back to the cloud instead of waiting: the counts checked here hold either way.
DEADLINE_MS = 10_000
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = REPO / "test-artifacts"


def admin_token(cloud: CloudProcess) -> str:
    with sqlite3.connect(f"file:{cloud.db_path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT value FROM meta WHERE key = 'admin_token'").fetchone()[0]


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def metric(samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every sample whose labels include ``labels``."""
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


async def run_tasks(cloud: CloudProcess, gamer_name: str, plan: dict[str, int], seed: int, waves: int = 1):
    """Submits ``plan`` (tasks per kind) in ``waves``, each sent once the one before is answered."""
    rng = random.Random(seed)
    kinds = [kind for kind, n in plan.items() for _ in range(n)]
    results = []

    async def submit_all(client: GamerClient) -> None:
        for wave in range(waves):
            results.extend(await asyncio.gather(*[
                client.submit_nowait(kind, get_kind(kind).example(rng, "small"), deadline_ms=DEADLINE_MS)
                for kind in kinds[wave::waves]]))

    async with GamerClient(cloud.url, name=gamer_name) as client:
        await asyncio.wait_for(submit_all(client), scaled(90))
        return results, client.client_id


async def test_api_stats_and_metrics_agree_with_a_known_run(procs):
    cloud = procs.cloud()
    procs.peer(cloud, "obs_peer")
    await asyncio.to_thread(cloud.wait_for_peers, 1)
    plan = {"ai_pathfinding": 3, "physics": 2, "ai_npc_dialogue": 1}
    results, gamer_id = await run_tasks(cloud, "obs_gamer_quinn", plan, seed=404)
    cost = sum(r.cost_micro_usd for r in results)

    stats = await asyncio.to_thread(cloud.wait_settled)
    tasks = stats["tasks"]
    assert (tasks["submitted"], tasks["completed"], tasks["failed"], tasks["queued"]) == (6, 6, 0, 0)
    assert tasks["by_kind"] == plan
    assert {k: v["completed"] for k, v in stats["recent"]["kinds"].items()} == plan
    assert stats["ledger"]["balanced"] and stats["ledger"]["charged_micro_usd"] == cost > 0
    assert {p["name"] for p in stats["peers"]} <= {"obs_peer"}
    assert stats["gamers"] == {"connected": 0, "known": 1}

    # Gamer identities: never to anonymous visitors, always to the admin.
    status, body = await asyncio.to_thread(cloud.get, "/api/stats")
    assert status == 200 and b"obs_gamer_quinn" not in body and gamer_id.encode() not in body
    status, body = await asyncio.to_thread(cloud.get, "/api/stats",
                                           {"Authorization": f"Bearer {admin_token(cloud)}"})
    gamers = json.loads(body)["gamers"]["list"]
    assert [(g["id"], g["name"], g["tasks"], g["spent_micro_usd"]) for g in gamers] == [
        (gamer_id, "obs_gamer_quinn", 6, cost)]

    status, body = await asyncio.to_thread(cloud.get, "/metrics")
    assert status == 200
    samples = metric_samples(body.decode())
    for kind, n in plan.items():
        assert metric(samples, "p2c2r_tasks_finished_total", kind=kind) == n, kind
        assert metric(samples, "p2c2r_task_latency_seconds_count", kind=kind) == n, kind
    assert metric(samples, "p2c2r_tasks_finished_total", outcome="failed") == 0
    assert metric(samples, "p2c2r_tasks_submitted_total") == 6
    assert metric(samples, "p2c2r_cache_misses_total") == 6
    assert metric(samples, "p2c2r_peers_joined_total") >= 1
    assert metric(samples, "p2c2r_peers_connected") == (
        metric(samples, "p2c2r_peers_joined_total") - metric(samples, "p2c2r_peers_left_total"))
    assert metric(samples, "p2c2r_queue_depth") == 0
    assert metric(samples, "p2c2r_gamers_charged_micro_usd") == cost
    assert metric(samples, "p2c2r_ledger_balance_micro_usd") == 0
    assert metric(samples, "process_resident_memory_bytes") > 0


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run browser tests"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip")
    pytest.skip(reason)


@pytest.mark.browser
async def test_dashboard_follows_the_network_live_in_a_real_browser(procs):
    require_chromium()
    from playwright.async_api import async_playwright, expect

    timeout_ms = scaled(30) * 1000
    cloud = procs.cloud()
    procs.peer(cloud, "dash_peer_one", slots=2)
    await asyncio.to_thread(cloud.wait_for_peers, 1)
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 1000})
            problems: list[str] = []
            navigations: list[str] = []
            page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("framenavigated", lambda f: f == page.main_frame and navigations.append(f.url))

            await page.goto(cloud.http + "/")
            await expect(page.locator("#conn-text")).to_have_text("live", timeout=timeout_ms)
            await expect(page.locator("#peer-count")).to_have_text("1", timeout=timeout_ms)
            await expect(page.locator("#view")).to_have_text("public view")
            await page.evaluate("window.__sameDocument = 'yes'")

            # A peer joins: the count, the table and the event feed follow without a reload.
            procs.peer(cloud, "dash_peer_two", slots=2)
            await expect(page.locator("#peer-count")).to_have_text("2", timeout=scaled(90) * 1000)
            await expect(page.locator("#peers tbody")).to_contain_text("dash_peer_two")
            joined = page.locator("#events li[data-event=peer_joined]", has_text="dash_peer_two")
            await expect(joined).to_have_count(1, timeout=timeout_ms)

            # Tasks complete: the counters, the per-kind table and the charts' rate follow.
            plan = {"ai_pathfinding": 6, "physics": 6, "ai_npc_dialogue": 4, "rt_reflections": 4}
            results, gamer_id = await run_tasks(cloud, "dash_gamer_ada", plan, seed=99, waves=5)
            await expect(page.locator("#tasks-completed")).to_have_text(str(len(results)), timeout=timeout_ms)
            await expect(page.locator("#kinds tbody tr")).to_have_count(len(plan), timeout=timeout_ms)
            await expect(page.locator("#tasks-rate")).not_to_have_text(re.compile(r"^(0\.00|—)$"), timeout=timeout_ms)
            await expect(page.locator("#ledger")).to_have_text("balanced")
            assert await page.evaluate("window.__sameDocument") == "yes"
            assert len(navigations) == 1, navigations
            stats = await asyncio.to_thread(cloud.stats)
            assert stats["tasks"]["completed"] == len(results)
            content = await page.content()
            assert "dash_gamer_ada" not in content and gamer_id not in content  # the public view names no gamer
            await page.screenshot(path=str(ARTIFACTS / "dashboard-public.png"), full_page=True)

            # The admin view: the token leaves the address bar, gamers are listed.
            await page.goto(f"{cloud.http}/?token={admin_token(cloud)}")
            await expect(page.locator("#view")).to_have_text("admin view", timeout=timeout_ms)
            await expect(page.locator("#gamers tbody")).to_contain_text("dash_gamer_ada", timeout=timeout_ms)
            assert "token" not in page.url
            await expect(page.locator("#tasks-rate")).not_to_have_text(re.compile(r"^(0\.00|—)$"), timeout=timeout_ms)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert problems == []
        finally:
            await browser.close()
