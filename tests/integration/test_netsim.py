"""Three devices for real: the failover drill across simulated hosts, and test_network.py against a live network.

The drill runs in network-namespace mode where this machine allows it (root with ``ip netns``), and must
there under CI; otherwise on loopback ports. Every wait inside it is a bounded wait on an observable
condition; every process and namespace it makes is gone when it returns, passed or failed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from p2c2r import netcheck
from p2c2r.cli import main as cli_main
from p2c2r.netsim import Drill, SimSettings, netns_available, remove_stale_namespaces, simulate
from tests.procs import TIMEOUT_SCALE, scaled

IN_CI_AS_ROOT = os.environ.get("CI", "").lower() == "true" and hasattr(os, "geteuid") and os.geteuid() == 0


# Under CI as root these must run: no skip there, a failure instead (see _drill_mode).
needs_netns = pytest.mark.skipif(not IN_CI_AS_ROOT and not netns_available()[0], reason="needs root and `ip netns`")


def _our_namespaces(pid: int | None = None) -> list[str]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    prefix = f"p2c2r-{pid or os.getpid()}-"
    return [line.split()[0] for line in proc.stdout.splitlines() if line.startswith(prefix)]


def _drill_mode() -> str:
    ok, why = netns_available()
    if IN_CI_AS_ROOT:
        assert ok, f"CI runs as root: the drill must run in namespace mode, but {why}"
    return "netns" if ok else "loopback"


@pytest.mark.timeout(600)
def test_failover_drill_across_three_hosts(tmp_path):
    mode = _drill_mode()
    lines: list[str] = []
    result = simulate(SimSettings(short=True, mode=mode, workdir=str(tmp_path / "sim"), out=lines.append,
                                  timeout_scale=TIMEOUT_SCALE))
    transcript = "\n".join(lines)
    assert result["mode"] == mode, transcript
    steps = {s["step"]: s for s in result["steps"]}
    assert sorted(steps) == list(range(1, 9)), transcript
    for step in result["steps"]:
        assert step["ok"], f"step {step['step']} ({step['title']}) failed:\n{transcript}"
    tasks = result["tasks"]
    assert tasks["lost"] == 0 and tasks["failed"] == 0 and tasks["unverified"] == 0, transcript
    assert tasks["completed"] == tasks["submitted"] > 0
    assert result["ledger"]["balance_micro_usd"] == 0 and result["ledger"]["balanced"]
    assert result["cloud_fallback"] > 0
    # Every kind made it through a peer, over the simulated WAN: never faster than its two round trips.
    low = result["latency_ms_one_way"][0]
    for kind, row in result["latency"].items():
        assert row["n"] > 0 and row["p50_ms"] >= 4 * low, (kind, row)
    # The peer links carried the work, each direction within the 1 Mbit/s cap (one-second samples).
    for name in ("peer1", "peer2"):
        link = result["links"][name]
        assert link["bytes_down"] > 0 and link["bytes_up"] > 0
        assert max(link["peak_down_bytes_per_s"], link["peak_up_bytes_per_s"]) <= 1.1 * 1_000_000 / 8, link
    assert result["ok"], transcript
    assert json.loads(json.dumps(result))["ok"]  # what --json prints
    assert f"mode: {mode}" in transcript
    assert not _our_namespaces(), "a namespace outlived the drill"


@needs_netns
def test_namespaces_are_deleted_when_the_drill_breaks(tmp_path, monkeypatch):
    veths: list[str] = []

    async def broken(self):
        assert len(_our_namespaces()) == 3  # they exist while the drill runs
        veths.extend(host.root_veth for host in self.topo.hosts.values())
        raise RuntimeError("the drill broke")

    monkeypatch.setattr(Drill, "run", broken)
    with pytest.raises(RuntimeError, match="the drill broke"):
        simulate(SimSettings(short=True, mode="netns", workdir=str(tmp_path), out=lambda line: None))
    assert not _our_namespaces()
    assert len(veths) == 3
    for veth in veths:
        assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0, veth


@needs_netns
def test_namespaces_of_a_killed_simulation_are_removed_by_the_next():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    name = f"p2c2r-{dead.pid}-abc123-cloud"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in remove_stale_namespaces()
        assert not _our_namespaces(dead.pid)
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


# test_network.py against a live network -------------------------------------------------------------


def test_network_check_passes_on_a_working_network(procs, capsys):
    cloud = procs.cloud()
    procs.peer(cloud, "check_peer", slots=1)
    cloud.wait_for_peers(1)
    code = cli_main(["test-network", "--cloud-ip", "127.0.0.1", "--cloud-port", str(cloud.port),
                     "--budget-ms", str(netcheck.LATENCY_BUDGET_MS * TIMEOUT_SCALE), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert set(statuses.values()) == {"PASS"}, statuses
    from p2c2r.tasks import registry

    for kind in registry():
        assert statuses[kind] == "PASS" and statuses[f"latency {kind}"] == "PASS"
        assert len(report["latency_ms"][kind]) == 3
    assert "All" in out and "checks passed" in out


async def test_network_check_fails_with_the_peer_hint_when_no_peer_is_connected(procs):
    cloud = procs.cloud()
    lines: list[str] = []
    report = await netcheck.check_network("127.0.0.1", cloud.port, out=lines.append, timeout_s=scaled(10))
    assert not report.passed
    assert [report.get(n).status for n in ("address", "port", "http", "handshake")] == ["PASS"] * 4
    peers = report.get("peers")
    assert peers.status == "FAIL" and peers.hint == netcheck.HINT_NO_PEER
    assert all(c.status == "SKIP" for c in report.checks[5:])
    text = "\n".join(lines)
    assert "FAIL  peers" in text and "run_peer.py" in text
    assert cloud.stats()["tasks"]["submitted"] == 0  # no task was sent to wait for a peer that is not there


def test_network_check_gives_the_port_hint_when_nothing_listens(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = cli_main(["test-network", "--cloud-ip", "127.0.0.1", "--cloud-port", str(port)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  port" in out and "is run_cloud.py running" in out and "ngrok" in out
