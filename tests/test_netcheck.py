"""test_network.py's verdicts and hints, from stubbed answers (the live network is in tests/integration)."""

from __future__ import annotations

import msgspec

from p2c2r import netcheck
from p2c2r.errors import TaskFailed
from p2c2r.gamer.client import TaskResult
from p2c2r.tasks import get_kind


class StubClient:
    """Answers every task like a coordinator would, with the given source; ``tamper`` spoils outputs."""

    def __init__(self, source: str = "peer", *, tamper: bool = False, fail: str | None = None,
                 latency_ms: float = 12.0) -> None:
        self.source, self.tamper, self.fail, self.latency_ms = source, tamper, fail, latency_ms
        self.sent: list[str] = []

    async def submit(self, kind_name: str, raw, *, deadline_ms: int | None = None) -> TaskResult:
        self.sent.append(kind_name)
        if self.fail:
            raise TaskFailed("t1", self.fail, "the task timed out")
        kind = get_kind(kind_name)
        output = msgspec.to_builtins(kind.compute(kind.parse_input(raw)))
        if self.tamper:
            output = _spoil(output)
        return TaskResult("t1", kind_name, output, self.source, self.latency_ms, self.latency_ms, 5)


def _spoil(output):
    """A well-formed output with wrong contents: every number shifted."""
    if isinstance(output, dict):
        return {k: _spoil(v) for k, v in output.items()}
    if isinstance(output, list):
        return [_spoil(v) for v in output]
    if isinstance(output, bool):
        return not output
    if isinstance(output, (int, float)):
        return output + 7
    if isinstance(output, str):
        return output + " (forged)"
    return output


async def _run(client, kind="ai_pathfinding", samples=2) -> tuple[netcheck.Check, netcheck.Report]:
    report = netcheck.Report("ws://stub")

    def add(check: netcheck.Check) -> netcheck.Check:
        report.checks.append(check)
        return check

    await netcheck.check_kinds(client, [kind], samples, add, report)
    return report.checks[0], report


async def test_a_round_trip_through_a_peer_that_verifies_passes():
    check, report = await _run(StubClient("peer"))
    assert check.status == "PASS"
    assert report.latency_ms["ai_pathfinding"] == [12.0, 12.0]


async def test_an_answer_from_the_cloud_means_no_peer_did_it():
    check, report = await _run(StubClient("cloud"))
    assert check.status == "FAIL" and "cloud" in check.detail
    assert check.hint == netcheck.HINT_NO_PEER_TOOK_IT and "peer is actually running" in check.hint
    assert "ai_pathfinding" not in report.latency_ms


async def test_a_result_that_does_not_verify_here_fails():
    check, _ = await _run(StubClient("peer", tamper=True))
    assert check.status == "FAIL" and "does not verify" in check.detail
    assert check.hint == netcheck.HINT_BAD_RESULT


async def test_a_failed_task_gets_the_timing_out_hint():
    client = StubClient(fail="timeout")
    check, _ = await _run(client)
    assert check.status == "FAIL" and "timeout" in check.detail
    assert "ai_npc_dialogue" in check.hint  # "try simpler tasks first"
    assert client.sent == ["ai_pathfinding"]  # no more tasks after the first failure


async def test_cached_answers_are_drawn_again():
    client = StubClient("cache")
    check, _ = await _run(client, samples=2)
    assert check.status == "FAIL" and "cache" in check.detail
    assert len(client.sent) == 5  # samples + 3 fresh draws at most


def test_latency_against_the_seeds_200_ms_budget():
    assert netcheck.latency_check("physics", [150, 180, 900]).status == "PASS"  # the median counts
    slow = netcheck.latency_check("physics", [250, 260, 270])
    assert slow.status == "FAIL" and slow.hint == netcheck.HINT_LATENCY and "100-200 ms is normal" in slow.hint
    assert netcheck.latency_check("physics", []).status == "SKIP"
