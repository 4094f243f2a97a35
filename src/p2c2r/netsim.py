"""``test_network.py --simulate``: three hosts on this machine, WAN links between them, the seed's failover drill.

Hosts. As root where ``ip netns`` works, each of the seed's devices is a Linux network namespace of its own
(``p2c2r-<pid>-<tag>-cloud``, ``-peers``, ``-gamer``), joined to the root namespace by a veth pair with a
private /30 (``10.x.y.0/30``, picked so that it overlaps nothing on this machine; the namespaces get no
default route, so nothing in them can reach any address outside it). Otherwise every host is a set of
loopback ports. The run says which mode it used. Namespaces are always deleted, on failure and Ctrl+C too,
and leftovers of a killed run (their creator's pid is gone) are deleted by the next one.

Links. A ``LinkProxy`` per link runs in this process (the root namespace), bridging the veth addresses:
gamer->coordinator, and one per peer (peer->coordinator), each with one-way latency and jitter
(40-120 ms, 20-60 ms with ``--short``); the peer links are capped at 1 Mbit/s each, the seed's
"~1 Mbps per peer". Cuts are made on the proxies.

Roles run as the real command line: ``ip netns exec NS python -m p2c2r.cli cloud|peer``; the gamer is a small
agent (``python -m p2c2r.netsim agent``) that keeps a steady stream of tasks going with the real
``GamerClient``, and answers the orchestrator's questions as JSON lines on stdin/stdout.

The drill (the seed's "Testing Failover", each step with an expectation that is checked):

    1 baseline            two peers, a steady stream: every task answered by a peer
    2 peer 1 Ctrl+C       peer 1 stopped with SIGINT while it works: it leaves, its work moves to peer 2
    3 peer 1 returns      with peer 1 away a burst waits in the queue; peer 1's link comes back and the
                          queued tasks reach it
    4 peer 1 killed       as 2, with SIGKILL (no goodbye)
    5 peer 1 returns      as 3
    6 all peers stop      the coordinator's own compute (cloud fallback) answers
    7 link cut            tasks acknowledged, then the gamer's link is cut; the coordinator finishes them
                          while the gamer is away; the link is restored, the gamer reconnects, resubmits
                          what it sent during the cut and collects every earlier result by id
    8 drain               nothing lost, the ledger sums to zero

Exit code 0 only if every expectation held and no task was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2c2r.testing.proxy import LinkProxy

NS_PREFIX = "p2c2r-"
_NS_NAME = re.compile(r"^p2c2r-(\d+)-([0-9a-f]+)-(cloud|peers|gamer)$")
STARTED = re.compile(r"Server started on [^:\s]+:(\d+)")
COORDINATOR_PORT_NETNS = 8765  # each namespace has its own ports: the seed's default is free there
PEER_BANDWIDTH_BPS = 1_000_000.0
BUDGET_MS = 200.0
LONG_DEADLINE_MS = 60_000  # tasks that must wait for a peer rather than fall back
# Tasks acknowledged just before the link cut: the coordinator falls back to its own compute for them
# shortly before this, well after the cut and with the gamer away.
CUT_DEADLINE_MS = 3000


# Straight to the coordinator, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SimulationError(Exception):
    """The simulation could not be set up (not a failed expectation: those are reported)."""


class _Abort(Exception):
    """A bounded wait ran out: the step fails and the drill stops there."""


@dataclass
class SimSettings:
    short: bool = False
    mode: str = "auto"  # "auto", "netns" or "loopback"
    json_output: bool = False
    latency_ms: tuple[float, float] | None = None  # one way; default (40, 120), (20, 60) when short
    peer_bandwidth_bps: float | None = PEER_BANDWIDTH_BPS
    stream_hz: float = 4.0
    stream_deadline_ms: int | None = None  # default 5000, 4000 when short
    peer_slots: int = 2
    timeout_scale: float = float(os.environ.get("P2C2R_TEST_TIMEOUT_SCALE", "1"))
    keep_logs: bool = False
    workdir: str | None = None
    out: Callable[[str], None] = print

    def __post_init__(self) -> None:
        if self.latency_ms is None:
            self.latency_ms = (20.0, 60.0) if self.short else (40.0, 120.0)
        if self.stream_deadline_ms is None:
            self.stream_deadline_ms = 4000 if self.short else 5000

    @property
    def step_tasks(self) -> int:
        """Stream tasks each step lets through before it moves on."""
        return 12 if self.short else 40

    @property
    def burst(self) -> int:
        """Large pathfinding tasks (65 kB each, half a second of a 1 Mbit/s link) queued while peer 1 is away:
        peer 2 alone needs seconds to drain them, longer than peer 1 needs to reconnect."""
        return 8 if self.short else 12


# Hosts ----------------------------------------------------------------------------------------------------


@dataclass
class Host:
    role: str  # "cloud", "peers", "gamer"
    address: str  # the host's own address (inside its namespace)
    root_address: str  # the root namespace's address on the link to it (proxies listen there)
    netns: str | None = None
    root_veth: str | None = None
    # The address each link's proxy dials the coordinator from (netns mode): one /24 per peer, as real
    # peers on different home networks (the coordinator will not pair replicas from one /24).
    source_address: str | None = None

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv


class Topology:
    mode = "loopback"

    def __init__(self) -> None:
        self.hosts = {role: Host(role, "127.0.0.1", "127.0.0.1") for role in ("cloud", "peers", "gamer")}

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        pass

    def source_for(self, link: str) -> str | None:
        return None

    def describe(self) -> str:
        return "loopback: every host is a set of ports on 127.0.0.1 (no root, or no `ip netns`)"


class NetnsTopology(Topology):
    mode = "netns"

    def __init__(self) -> None:
        super().__init__()
        self.tag = secrets.token_hex(3)
        self.created: list[Host] = []
        self.sources: dict[str, str] = {}

    def source_for(self, link: str) -> str | None:
        return self.sources.get(link)

    def setup(self) -> None:
        remove_stale_namespaces()
        base = _free_subnet()
        # 10.x.y.0/22: the three /30 links in its first /24; one source address in each of the next three.
        self.sources = {link: str(base + 256 * (i + 1) + 1) for i, link in enumerate(("peer1", "peer2", "gamer"))}
        for i, role in enumerate(("cloud", "peers", "gamer")):
            root_ip, host_ip = str(base + 4 * i + 1), str(base + 4 * i + 2)
            host = Host(role, host_ip, root_ip, netns=f"{NS_PREFIX}{os.getpid()}-{self.tag}-{role}",
                        root_veth=f"p2{self.tag}{role[0]}0")
            inner = f"p2{self.tag}{role[0]}1"
            self.hosts[role] = host
            _ip("netns", "add", host.netns)
            self.created.append(host)
            _ip("link", "add", host.root_veth, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", host.netns)
            _ip("addr", "add", f"{root_ip}/30", "dev", host.root_veth)
            _ip("link", "set", host.root_veth, "up")
            _ip("-n", host.netns, "addr", "add", f"{host_ip}/30", "dev", inner)
            _ip("-n", host.netns, "link", "set", inner, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
        cloud = self.hosts["cloud"]
        assert cloud.netns is not None and cloud.root_veth is not None
        for address in self.sources.values():
            _ip("addr", "add", f"{address}/32", "dev", cloud.root_veth)
            _ip("-n", cloud.netns, "route", "add", f"{address}/32", "via", cloud.root_address)

    def teardown(self) -> None:
        for host in reversed(self.created):
            _delete_namespace(host.netns or "", host.root_veth)
        self.created.clear()

    def describe(self) -> str:
        parts = ", ".join(f"{h.role} {h.address} (ns {h.netns})" for h in self.hosts.values())
        seen = ", ".join(f"{link} from {addr}" for link, addr in self.sources.items())
        return f"network namespaces with veth links: {parts}; the coordinator sees {seen}"


def _ip(*args: str) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise SimulationError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def _delete_namespace(name: str, root_veth: str | None = None) -> None:
    """Kill what still runs in the namespace (only ever ours), then delete it and its link."""
    if not name:
        return
    with contextlib.suppress(Exception):
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
    if root_veth:
        subprocess.run(["ip", "link", "delete", root_veth], capture_output=True, timeout=30)


def remove_stale_namespaces() -> list[str]:
    """Namespaces left by simulations whose process is gone (killed with SIGKILL, say)."""
    removed = []
    with contextlib.suppress(Exception):
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        for line in listing.splitlines():
            name = line.split()[0] if line.split() else ""
            match = _NS_NAME.match(name)
            if match and not _pid_alive(int(match.group(1))):
                _delete_namespace(name, f"p2{match.group(2)}{match.group(3)[0]}0")
                removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_subnet() -> ipaddress.IPv4Address:
    """The base of a 10.x.y.0/22 (links and source addresses are cut from it) that nothing here uses."""
    text = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                          timeout=10).stdout
    text += subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    used = []
    for token in re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)?\b", text):
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(token, strict=False))
    rng = random.Random(secrets.randbits(32))
    for _ in range(200):
        candidate = ipaddress.ip_network(f"10.{rng.randint(200, 254)}.{4 * rng.randint(0, 63)}.0/22")
        if not any(candidate.overlaps(net) for net in used if net.prefixlen > 0):
            return candidate.network_address
    raise SimulationError("found no free private 10.x.y.0/22 for the simulated links")


def netns_available() -> tuple[bool, str]:
    """Whether this process may build namespaces here, and if not, why."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "not root"
    if shutil.which("ip") is None:
        return False, "no `ip` command (iproute2)"
    probe = f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}-probe"
    try:
        proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            return False, f"`ip netns add` failed: {proc.stderr.strip()}"
        proc = subprocess.run(["ip", "netns", "exec", probe, "true"], capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            return False, f"`ip netns exec` failed: {proc.stderr.strip()}"
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    finally:
        subprocess.run(["ip", "netns", "delete", probe], capture_output=True, timeout=10)
    return True, ""


def choose_topology(mode: str) -> Topology:
    if mode == "loopback":
        return Topology()
    ok, why = netns_available()
    if ok:
        return NetnsTopology()
    if mode == "netns":
        raise SimulationError(f"network namespaces are not available here: {why}")
    return Topology()


# Processes ------------------------------------------------------------------------------------------------


class Role:
    """One real process (``python -m p2c2r.cli ...``) on a host, its output in a log file."""

    def __init__(self, name: str, host: Host, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        argv = host.command([sys.executable, "-m", "p2c2r.cli", *args])
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      cwd=workdir, env=env)

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()


class GamerAgent:
    """The orchestrator's handle on the gamer agent process: one JSON request, one JSON answer."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Any) -> None:
        self.proc = proc
        self._log = log
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, host: Host, url: str, workdir: Path, env: dict[str, str], seed: int) -> GamerAgent:
        log = open(workdir / "gamer.log", "ab")  # noqa: SIM115 - closed in stop()
        argv = host.command([sys.executable, "-m", "p2c2r.netsim", "agent", "--url", url, "--seed", str(seed)])
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                    stderr=log, cwd=workdir, env=env, limit=64 * 1024 * 1024)
        return cls(proc, log)

    async def request(self, op: str, timeout_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            raise _Abort(f"the gamer agent exited (code {self.proc.returncode}); see gamer.log")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise _Abort(f"the gamer agent could not {op}: {reply.get('error')}")
        return reply

    async def stop(self) -> None:
        try:
            if self.proc.returncode is None:
                with contextlib.suppress(Exception):
                    await self.request("quit", timeout_s=10)
                try:
                    await asyncio.wait_for(self.proc.wait(), 10)
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()
        finally:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self._log.close()


# The drill ------------------------------------------------------------------------------------------------


@dataclass
class Step:
    number: int
    title: str
    checks: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    aborted: str | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.aborted is None and all(ok for _, ok in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.number, "title": self.title, "ok": self.ok, "aborted": self.aborted,
                "seconds": round(self.seconds, 3),
                "checks": [{"expect": what, "ok": ok} for what, ok in self.checks], "notes": self.notes}


@dataclass
class TagRule:
    """What the tasks submitted under one tag must have come to, checked once the stream is drained."""

    step: Step
    tag: str
    what: str
    sources: frozenset[str] | None = None  # allowed sources; None = any
    at_least: int = 1


class Drill:
    def __init__(self, topo: Topology, settings: SimSettings, workdir: Path) -> None:
        self.topo = topo
        self.s = settings
        self.workdir = workdir
        self.out = settings.out
        # No HTTP/SOCKS proxy from the environment: every connection stays on the simulated links.
        self.env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.env.update({"PYTHONUNBUFFERED": "1", "P2C2R_KEY_DIR": str(workdir / "keys"), "P2C2R_DISABLE_GPU": "1",
                         "NO_PROXY": "*", "no_proxy": "*"})
        self.roles: list[Role] = []
        self.steps: list[Step] = []
        self.rules: list[TagRule] = []
        self.peers: dict[int, Role] = {}
        self.peer_links: dict[int, LinkProxy] = {}
        self.gamer_link: LinkProxy | None = None
        self.agent: GamerAgent | None = None
        self.cloud: Role | None = None
        self.stats_url = ""
        self.started = time.monotonic()
        self.setup_s = 0.0
        self.rates: dict[str, list[float]] = defaultdict(list)
        self.cut_tags: set[str] = set()  # submitted while the gamer's link was down: kept out of latency

    # Helpers --------------------------------------------------------------------------------------------

    def scaled(self, seconds: float) -> float:
        return seconds * self.s.timeout_scale

    async def until(self, condition: Callable[[], Awaitable[Any] | Any], timeout_s: float, what: str,
                    poll_s: float = 0.05) -> Any:
        """Poll an observable condition until it holds, for at most ``timeout_s`` (scaled)."""
        deadline = time.monotonic() + self.scaled(timeout_s)
        problem = ""
        while True:
            try:
                value = condition()
                if asyncio.iscoroutine(value):
                    value = await value
            except (OSError, TimeoutError, ValueError) as exc:  # the coordinator did not answer this time
                value, problem = None, f" (last poll: {type(exc).__name__}: {exc})"
            if value:
                return value
            if time.monotonic() > deadline:
                raise _Abort(f"timed out after {self.scaled(timeout_s):.0f} s waiting for {what}{problem}")
            await asyncio.sleep(poll_s)

    async def stats(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """/api/stats of the coordinator, asked directly (not through a link); retried for a bounded time."""

        def get() -> dict[str, Any]:
            with _DIRECT.open(self.stats_url, timeout=5) as resp:
                return json.loads(resp.read())

        deadline = time.monotonic() + self.scaled(timeout_s)
        while True:
            try:
                return await asyncio.to_thread(get)
            except (OSError, TimeoutError, ValueError) as exc:
                if time.monotonic() > deadline:
                    raise _Abort(f"the coordinator's /api/stats did not answer for {timeout_s:g} s: {exc}") from exc
                await asyncio.sleep(0.2)

    @staticmethod
    def peer_entry(stats: dict[str, Any], n: int) -> dict[str, Any] | None:
        return next((p for p in stats["peers"] if p.get("name") == f"peer{n}"), None)

    async def tag_status(self, tag: str) -> dict[str, Any]:
        assert self.agent is not None
        status = await self.agent.request("status")
        return status["tags"].get(tag, {"submitted": 0, "acked": 0, "done": 0, "completed": 0, "failed": 0,
                                         "pending": 0, "sources": {}})

    async def tag_done(self, tag: str, n: int | None = None) -> bool:
        st = await self.tag_status(tag)
        if n is None:
            return st["submitted"] > 0 and st["pending"] == 0
        return st["done"] >= n

    def begin(self, title: str) -> Step:
        if self.steps:
            self.steps[-1].seconds = time.monotonic() - self.steps[-1].started
        step = Step(len(self.steps) + 1, title)
        self.steps.append(step)
        self.out("")
        self.out(f"▶ Step {step.number}: {title}")
        return step

    def expect(self, step: Step, what: str, ok: bool) -> bool:
        step.checks.append((what, bool(ok)))
        self.out(f"   {'✔' if ok else '✘'} {what}")
        return bool(ok)

    def note(self, step: Step, text: str) -> None:
        step.notes.append(text)
        self.out(f"   · {text}")

    async def stream_tag(self, tag: str) -> None:
        assert self.agent is not None
        await self.agent.request("tag", tag=tag)

    # Set-up ---------------------------------------------------------------------------------------------

    async def start_network(self) -> None:
        cloud_host = self.topo.hosts["cloud"]
        port = COORDINATOR_PORT_NETNS if self.topo.mode == "netns" else 0
        self.cloud = Role("cloud", cloud_host, ["cloud", "--host", cloud_host.address, "--port", str(port),
                                                "--db", str(self.workdir / "results.db")], self.workdir, self.env)
        self.roles.append(self.cloud)
        match = await self.until(lambda: STARTED.search(self.cloud.output) or (not self.cloud.alive() and "dead"),
                                 90, "the coordinator to start")
        if match == "dead":
            raise SimulationError(f"the coordinator exited:\n{self.cloud.output[-2000:]}")
        port = int(match.group(1))
        self.stats_url = f"http://{cloud_host.address}:{port}/api/stats"
        lat = self.s.latency_ms
        assert lat is not None
        self.gamer_link = await LinkProxy(cloud_host.address, port, listen_host=self.topo.hosts["gamer"].root_address,
                                          latency_ms=lat, seed=1, source_host=self.topo.source_for("gamer")).start()
        for n in (1, 2):
            self.peer_links[n] = await LinkProxy(cloud_host.address, port,
                                                 listen_host=self.topo.hosts["peers"].root_address, latency_ms=lat,
                                                 bandwidth_bps=self.s.peer_bandwidth_bps, seed=1 + n,
                                                 source_host=self.topo.source_for(f"peer{n}")).start()
        for n in (1, 2):
            self.start_peer(n)
        await self.until_peers(2, 180)
        url = f"ws://{self.topo.hosts['gamer'].root_address}:{self.gamer_link.port}"
        self.agent = await GamerAgent.start(self.topo.hosts["gamer"], url, self.workdir, self.env, seed=7)
        kinds = (await self.agent.request("hello", timeout_s=self.scaled(60)))["kinds"]
        # Warm-up, outside the steps: the first use of each kernel and verifier on every host (numba compiles
        # on first call where its cache is cold) must not count against the first step's deadlines.
        t0 = time.monotonic()
        await self.agent.request("burst", n=4 * len(kinds), kind=None, deadline_ms=LONG_DEADLINE_MS, tag="0")
        await self.until(lambda: self.tag_done("0"), 180, "the warm-up tasks")
        self.out(f"   warm-up: {4 * len(kinds)} tasks in {time.monotonic() - t0:.1f} s")

    def start_peer(self, n: int) -> Role:
        old = self.peers.get(n)
        if old is not None and old.alive():
            raise SimulationError(f"peer {n} is already running")
        link = self.peer_links[n]
        incarnation = sum(r.name.startswith(f"peer{n}") for r in self.roles) + 1
        role = Role(f"peer{n}_{incarnation}", self.topo.hosts["peers"],
                    ["peer", "--cloud-ip", self.topo.hosts["peers"].root_address, "--cloud-port", str(link.port),
                     "--name", f"peer{n}", "--slots", str(self.s.peer_slots)], self.workdir, self.env)
        self.roles.append(role)
        self.peers[n] = role
        return role

    async def until_peers(self, count: int, timeout_s: float) -> None:
        """Wait for ``count`` peers on the coordinator; a peer process that died meanwhile ends the wait."""

        async def check() -> bool:
            for n, role in self.peers.items():
                if not role.alive():
                    tail = "\n".join(role.output.splitlines()[-6:])
                    raise _Abort(f"peer {n} exited (code {role.popen.returncode}) before connecting:\n{tail}")
            return await self._peers_connected(count)

        await self.until(check, timeout_s, f"{count} peer(s) to connect")

    async def _peers_connected(self, count: int) -> bool:
        return len((await self.stats())["peers"]) == count

    async def _sample_rates(self) -> None:
        """Bytes per second on each link and direction, about once a second, for the peak figures."""
        last = {name: (time.monotonic(), link.bytes_up, link.bytes_down) for name, link in self._links().items()}
        while True:
            await asyncio.sleep(1.0)
            for name, link in self._links().items():
                t0, up0, down0 = last[name]
                now = time.monotonic()
                self.rates[f"{name} up"].append((link.bytes_up - up0) / (now - t0))
                self.rates[f"{name} down"].append((link.bytes_down - down0) / (now - t0))
                last[name] = (now, link.bytes_up, link.bytes_down)

    def _links(self) -> dict[str, LinkProxy]:
        links = {f"peer{n}": link for n, link in self.peer_links.items()}
        if self.gamer_link is not None:
            links["gamer"] = self.gamer_link
        return links

    # Steps ----------------------------------------------------------------------------------------------

    async def step_baseline(self) -> None:
        step = self.begin("baseline: two peers, a steady stream of tasks from the gamer")
        assert self.agent is not None
        await self.agent.request("stream", hz=self.s.stream_hz, deadline_ms=self.s.stream_deadline_ms, tag="1")
        await self.until(lambda: self.tag_done("1", self.s.step_tasks), 60, f"{self.s.step_tasks} baseline results")
        stats = await self.stats()
        self.note(step, "peers: " + ", ".join(f"{p['name']} {p['tasks_done']} done" for p in stats["peers"]))
        self.rules.append(TagRule(step, "1", "every baseline task was answered by a peer", frozenset({"peer", "cache"})))

    async def step_peer_stops(self, sig: int) -> None:
        how = "SIGINT (Ctrl+C)" if sig == signal.SIGINT else "SIGKILL (no goodbye)"
        step = self.begin(f"peer 1 stops with {how} while it works")
        tag = str(step.number)
        await self.stream_tag(tag)
        try:
            await self.until(lambda: self._peer_running(1), 15, "peer 1 to hold a task", poll_s=0.01)
            held = True
        except _Abort:
            held = False
        before = await self.stats()
        peer2_before = (self.peer_entry(before, 2) or {}).get("tasks_done", 0)
        self.peers[1].signal(sig)
        t0 = time.monotonic()
        self.note(step, f"sent {how} to peer 1" + (" while it held a task" if held else " (it held no task just then)"))
        code = await asyncio.to_thread(self.peers[1].popen.wait, self.scaled(30))
        if sig == signal.SIGINT:
            self.expect(step, f"peer 1 shut down cleanly on Ctrl+C (exit code {code})", code == 0)
        await self.until(lambda: self._peer_gone(1), 20, "the coordinator to notice peer 1 left")
        after = await self.stats()
        self.expect(step, f"the coordinator noticed peer 1 left ({time.monotonic() - t0:.1f} s)", True)
        self.note(step, f"re-routed by the coordinator so far: {after['rerouted']} (was {before['rerouted']})")
        tag_after = f"{tag}b"
        await self.stream_tag(tag_after)
        await self.until(lambda: self.tag_done(tag_after, self.s.step_tasks), 60, "results with peer 1 gone")
        peer2_after = (self.peer_entry(await self.stats(), 2) or {}).get("tasks_done", 0)
        self.expect(step, f"peer 2 took the work (+{peer2_after - peer2_before} tasks)", peer2_after > peer2_before)
        self.rules.append(TagRule(step, tag, "no task lost or failed while peer 1 went away", at_least=0))
        self.rules.append(TagRule(step, tag_after, "with peer 1 gone, every task was answered by peer 2",
                                  frozenset({"peer", "cache"})))

    async def step_peer_returns(self) -> None:
        step = self.begin("peer 1 comes back; tasks queued meanwhile reach it")
        tag = str(step.number)
        await self.stream_tag(tag)
        link = self.peer_links[1]
        link.cut()  # peer 1 starts behind a closed link: it is ready and knocking before it may connect
        refused = link.refused
        self.start_peer(1)
        await self.until(lambda: link.refused > refused or not self.peers[1].alive(), 90, "peer 1 to start")
        self.expect(step, "peer 1 restarted and is trying to reconnect", self.peers[1].alive())
        burst_tag = f"{tag}q"
        assert self.agent is not None
        await self.agent.request("burst", n=self.s.burst, kind="ai_pathfinding", size="large",
                                 deadline_ms=LONG_DEADLINE_MS, tag=burst_tag)
        queued = await self.until(lambda: self._queued_at_least(1), 20, "tasks to wait in the queue")
        self.expect(step, f"with peer 1 away, a burst of {self.s.burst} tasks waits in the queue "
                          f"(depth {queued})", queued >= 1)
        link.restore()
        t0 = time.monotonic()
        await self.until(lambda: self._peer_present(1), 30, "peer 1 to reconnect")
        self.note(step, f"peer 1's link restored: reconnected in {time.monotonic() - t0:.1f} s")
        await self.until(lambda: self.tag_done(burst_tag), 60, "the queued burst to finish")
        entry = self.peer_entry(await self.stats(), 1) or {}
        self.expect(step, f"queued tasks reached peer 1 ({entry.get('tasks_done', 0)} done since it came back)",
                    entry.get("tasks_done", 0) >= 1)
        self.rules.append(TagRule(step, burst_tag, "every queued task was answered by a peer", frozenset({"peer"}),
                                  at_least=self.s.burst))
        self.rules.append(TagRule(step, tag, "no stream task lost or failed while peer 1 came back", at_least=0))

    async def step_all_peers_stop(self) -> None:
        step = self.begin("every peer stops: the coordinator's own compute takes over")
        tag = str(step.number)
        await self.stream_tag(tag)
        for n in (1, 2):
            self.peers[n].signal(signal.SIGINT)
        for n in (1, 2):
            code = await asyncio.to_thread(self.peers[n].popen.wait, self.scaled(30))
            self.note(step, f"peer {n} stopped (exit code {code})")
        await self.until(lambda: self._peers_connected(0), 20, "the coordinator to see no peer")
        before = (await self.stats())["cloud_fallback"]
        cloud_tag = f"{tag}c"
        await self.stream_tag(cloud_tag)
        n_cloud = max(3, self.s.step_tasks // 2)
        wait_s = self.s.stream_deadline_ms / 1000.0 + 30  # type: ignore[operator]
        await self.until(lambda: self.tag_done(cloud_tag, n_cloud), wait_s, "cloud fallback results")
        after = (await self.stats())["cloud_fallback"]
        self.expect(step, f"the coordinator computed tasks itself ({after - before} cloud fallbacks)", after > before)
        await self.stream_tag(f"{tag}z")  # what comes next may meet the peers of step 7
        await self.until(lambda: self.tag_done(cloud_tag), wait_s, "the last cloud fallback results")
        self.rules.append(TagRule(step, tag, "no task lost or failed while the peers stopped", at_least=0))
        self.rules.append(TagRule(step, f"{tag}z", "no task lost or failed after them", at_least=0))
        self.rules.append(TagRule(step, cloud_tag, "with no peer, every task was answered by the coordinator",
                                  frozenset({"cloud", "cache"}), at_least=n_cloud))

    async def step_link_cut(self) -> None:
        step = self.begin("the gamer's link to the coordinator is cut and restored")
        tag = str(step.number)
        assert self.agent is not None and self.gamer_link is not None and self.cloud is not None
        acked_tag = f"{tag}a"
        n = 8
        # No peer is up: the coordinator computes these itself when their deadline nears, with the gamer away.
        await self.agent.request("burst", n=n, kind=None, deadline_ms=CUT_DEADLINE_MS, tag=acked_tag)
        await self.until(lambda: self._acked(acked_tag, n), 20, "the coordinator to acknowledge the tasks")
        completed_before = (await self.stats())["tasks"]["completed"]
        await self.stream_tag(tag)
        dropped = self.gamer_link.cut()
        early = (await self.tag_status(acked_tag))["done"]
        self.expect(step, f"{n} tasks acknowledged, none answered yet ({early}), then the link is cut: "
                          f"{dropped} connection(s) dropped, new ones refused", dropped >= 1 and early == 0)
        await self.until(lambda: self._agent_connected(False), 15, "the gamer to notice the cut")
        await self.until(lambda: self._completed_at_least(completed_before + n), 60,
                         "the coordinator to finish the acknowledged tasks")
        kept = self.cloud.output.count("gamer away: kept for fetch")
        status = await self.tag_status(acked_tag)
        self.expect(step, f"the coordinator finished them while the gamer was away and kept the results "
                          f"(the gamer had {status['done']} of {n}; {kept} result(s) kept for fetch)",
                    status["done"] == 0)
        await self.until(lambda: self.gamer_link.refused >= 1, 15, "the gamer to try to reconnect")
        self.expect(step, f"the gamer kept trying during the cut ({self.gamer_link.refused} attempts refused)",
                    self.gamer_link.refused >= 1)
        self.gamer_link.restore()
        t0 = time.monotonic()
        await self.until(lambda: self._agent_connected(True), 30, "the gamer to reconnect")
        await self.until(lambda: self.tag_done(acked_tag), 30, "the gamer to collect the results")
        reconnects = (await self.agent.request("status"))["reconnects"]
        self.expect(step, f"the gamer reconnected ({reconnects} reconnect(s)) and collected all {n} results "
                          f"by id in {time.monotonic() - t0:.1f} s", reconnects >= 1)
        self.rules.append(TagRule(step, acked_tag, "every task acknowledged before the cut was delivered after it",
                                  frozenset({"cloud", "cache"}), at_least=n))
        self.rules.append(TagRule(step, tag, "every task submitted during the cut was resubmitted and answered",
                                  at_least=0))
        self.cut_tags.add(tag)

    async def step_drain(self) -> dict[str, Any]:
        step = self.begin("drain: the stream stops, every task is accounted for")
        assert self.agent is not None
        await self.agent.request("stop_stream")
        try:
            await self.until(lambda: self._all_done(), 60, "every task to finish")
        except _Abort as exc:
            self.note(step, str(exc))
        report = await self.agent.request("report", timeout_s=60)
        for rule in self.rules:
            st = report["tags"].get(rule.tag, {})
            sources = {k for k, v in st.get("sources", {}).items() if v}
            ok = (st.get("submitted", 0) >= rule.at_least and st.get("failed", 0) == 0 and st.get("pending", 0) == 0
                  and (rule.sources is None or sources <= rule.sources))
            detail = (f"{st.get('completed', 0)}/{st.get('submitted', 0)} completed, {st.get('failed', 0)} failed, "
                      f"sources {dict(st.get('sources', {}))}")
            rule.step.checks.append((f"{rule.what}: {detail}", ok))
            self.out(f"   {'✔' if ok else '✘'} step {rule.step.number}: {rule.what}: {detail}")
        totals = report["totals"]
        stats = await self.stats()
        ledger = stats.get("ledger", {})
        self.expect(step, f"nothing lost: {totals['submitted']} submitted, {totals['completed']} completed, "
                          f"{totals['failed']} failed, {totals['lost']} lost", totals["lost"] == 0)
        self.expect(step, f"every result verified on the gamer's side ({totals['unverified']} did not)",
                    totals["unverified"] == 0)
        self.expect(step, f"the ledger sums to zero (balance {ledger.get('balance_micro_usd')} µ$)",
                    ledger.get("balance_micro_usd") == 0)
        return {"report": report, "stats": stats}

    # Conditions -----------------------------------------------------------------------------------------

    async def _peer_running(self, n: int) -> bool:
        entry = self.peer_entry(await self.stats(), n)
        return bool(entry and entry.get("running", 0) >= 1)

    async def _peer_gone(self, n: int) -> bool:
        return self.peer_entry(await self.stats(), n) is None

    async def _peer_present(self, n: int) -> bool:
        return self.peer_entry(await self.stats(), n) is not None

    async def _queued_at_least(self, n: int) -> int:
        queued = (await self.stats())["tasks"]["queued"]
        return queued if queued >= n else 0

    async def _completed_at_least(self, n: int) -> bool:
        return (await self.stats())["tasks"]["completed"] >= n

    async def _acked(self, tag: str, n: int) -> bool:
        return (await self.tag_status(tag))["acked"] >= n

    async def _agent_connected(self, want: bool) -> bool:
        assert self.agent is not None
        return (await self.agent.request("status"))["connected"] is want

    async def _all_done(self) -> bool:
        assert self.agent is not None
        return (await self.agent.request("status"))["pending"] == 0

    # Run ------------------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        s = self.s
        lat = s.latency_ms
        assert lat is not None
        self.out(f"🌐 P2C2R network simulation ({'short' if s.short else 'full'} drill)")
        self.out(f"   mode: {self.topo.describe()}")
        self.out(f"   links: {lat[0]:.0f}-{lat[1]:.0f} ms one way with jitter on every link; peer links capped at "
                 f"{(s.peer_bandwidth_bps or 0) / 1e6:g} Mbit/s; stream {s.stream_hz:g} tasks/s, "
                 f"deadline {s.stream_deadline_ms} ms")
        sampler: asyncio.Task[None] | None = None
        final: dict[str, Any] = {}
        try:
            await self.start_network()
            self.setup_s = time.monotonic() - self.started
            self.started = time.monotonic()
            sampler = asyncio.get_running_loop().create_task(self._sample_rates())
            for action in (self.step_baseline, lambda: self.step_peer_stops(signal.SIGINT), self.step_peer_returns,
                           lambda: self.step_peer_stops(signal.SIGKILL), self.step_peer_returns,
                           self.step_all_peers_stop, self.step_link_cut):
                try:
                    await action()
                except (_Abort, OSError, TimeoutError, ValueError, KeyError) as exc:
                    step = self.steps[-1]
                    step.aborted = str(exc) if isinstance(exc, _Abort) else f"{type(exc).__name__}: {exc}"
                    self.out(f"   ✘ {step.aborted}")
                    break
            if self.agent is not None:
                final = await self.step_drain()
        except _Abort as exc:
            if self.steps:
                self.steps[-1].aborted = str(exc)
            self.out(f"   ✘ {exc}")
        finally:
            elapsed = time.monotonic() - self.started
            if sampler is not None:
                sampler.cancel()
            await self.shutdown()
        return self.summarise(final, elapsed)

    async def shutdown(self) -> None:
        """Stop everything this drill started, each part whatever happened to the others."""
        if self.agent is not None:
            with contextlib.suppress(Exception):
                await self.agent.stop()
        for role in [r for r in reversed(self.roles) if r is not self.cloud] + [self.cloud]:
            if role is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(role.stop)
        for link in self._links().values():
            with contextlib.suppress(Exception):
                await link.stop()

    def summarise(self, final: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
        report = final.get("report", {})
        stats = final.get("stats", {})
        totals = report.get("totals", {"submitted": 0, "completed": 0, "failed": 0, "lost": 0, "unverified": 0})
        records = report.get("records", [])
        steady = latency_table(records, {"1"})
        latency = latency_table(records, exclude=self.cut_tags)
        links = {}
        for name, link in self._links().items():
            total = link.bytes_up + link.bytes_down
            links[name] = {
                "bytes_up": link.bytes_up,
                "bytes_down": link.bytes_down,
                "avg_bytes_per_s": round(total / elapsed_s, 1) if elapsed_s > 0 else 0.0,
                "peak_up_bytes_per_s": round(max(self.rates.get(f"{name} up") or [0.0]), 1),
                "peak_down_bytes_per_s": round(max(self.rates.get(f"{name} down") or [0.0]), 1),
            }
        ok = bool(final) and all(step.ok for step in self.steps) and totals.get("lost", 1) == 0
        out = self.out
        out("")
        out("📊 Summary")
        if self.steps and not self.steps[-1].seconds:
            self.steps[-1].seconds = time.monotonic() - self.steps[-1].started
        out(f"   mode: {self.topo.mode}; set-up {self.setup_s:.1f} s, drill {elapsed_s:.1f} s ("
            + ", ".join(f"{st.number}: {st.seconds:.1f}" for st in self.steps) + ")")
        out(f"   tasks: {totals['submitted']} submitted, {totals['completed']} completed, {totals['failed']} failed, "
            f"{totals['lost']} lost")
        lat = self.s.latency_ms or (0.0, 0.0)
        model = 4 * (lat[0] + lat[1]) / 2
        out(f"   latency through peers, submit to result on the gamer (4 one-way WAN hops ≈ {model:.0f} ms "
            f"on average, plus compute):")
        for title, table in (("steady state, step 1", steady),
                             ("whole drill, failovers included (not tasks sent while the link was cut)", latency)):
            out(f"     {title}:")
            for kind, row in table.items():
                out(f"       {kind:<16} n={row['n']:<4} p50 {row['p50_ms']:7.1f} ms   p99 {row['p99_ms']:7.1f} ms"
                    + (f"   (+{row['cloud_n']} by cloud fallback)" if row.get("cloud_n") else ""))
        for name, row in links.items():
            out(f"   link {name:<6} {row['avg_bytes_per_s'] * 8 / 1000:8.1f} kbit/s average, "
                f"peak second {row['peak_down_bytes_per_s'] * 8 / 1000:.0f} down / "
                f"{row['peak_up_bytes_per_s'] * 8 / 1000:.0f} up kbit/s "
                f"({row['bytes_up']} B up, {row['bytes_down']} B down)")
        ledger = stats.get("ledger", {})
        if ledger:
            out(f"   ledger: balance {ledger.get('balance_micro_usd')} µ$ (charged {ledger.get('charged_micro_usd')}, "
                f"paid to peers {ledger.get('paid_to_peers_micro_usd')}, fee {ledger.get('fee_micro_usd')}, "
                f"coordinator compute {ledger.get('coordinator_compute_micro_usd')})")
        failed_steps = [st for st in self.steps if not st.ok]
        out("")
        if ok:
            out(f"✅ Failover drill passed: all {len(self.steps)} steps held, nothing lost.")
        else:
            names = ", ".join(f"{st.number} ({st.title.split(':')[0]})" for st in failed_steps) or "the drill did not finish"
            out(f"❌ Failover drill failed: {names}. Logs: {self.workdir}")
        return {
            "ok": ok,
            "mode": self.topo.mode,
            "short": self.s.short,
            "elapsed_s": round(elapsed_s, 3),
            "setup_s": round(self.setup_s, 3),
            "latency_ms_one_way": list(self.s.latency_ms or ()),
            "steps": [st.as_dict() for st in self.steps],
            "tasks": totals,
            "latency_steady": steady,
            "latency": latency,
            "links": links,
            "ledger": ledger,
            "coordinator": stats.get("tasks", {}),
            "cloud_fallback": stats.get("cloud_fallback"),
            "rerouted": stats.get("rerouted"),
            "workdir": str(self.workdir),
        }


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def simulate(settings: SimSettings) -> dict[str, Any]:
    """Build the hosts, run the drill, tear everything down; the result as a dict (``ok`` says it passed)."""
    topo = choose_topology(settings.mode)
    own_dir = settings.workdir is None
    workdir = Path(settings.workdir or tempfile.mkdtemp(prefix="p2c2r-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main_thread else None
    result: dict[str, Any] = {"ok": False, "mode": topo.mode}
    drill: Drill | None = None
    try:
        topo.setup()
        drill = Drill(topo, settings, workdir)
        result = asyncio.run(_run_drill(drill))
    finally:
        if drill is not None:
            for role in drill.roles:  # whatever the drill could not stop itself
                if role.alive():
                    role.popen.kill()
                    with contextlib.suppress(Exception):
                        role.popen.wait(10)
            if drill.agent is not None and drill.agent.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(drill.agent.proc.pid, signal.SIGKILL)
        topo.teardown()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        if own_dir and result.get("ok") and not settings.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


async def _run_drill(drill: Drill) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await drill.run()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _raise_interrupt)


def run_simulation(settings: SimSettings) -> int:
    """The command line's entry: exit code 0 only when the drill passed."""
    try:
        result = simulate(settings)
    except SimulationError as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\n⛔ Interrupted: every process stopped and every namespace deleted.", file=sys.stderr)
        return 130
    if settings.json_output:
        print(json.dumps(result))
    return 0 if result.get("ok") else 1


# The gamer agent (runs on the gamer host) ------------------------------------------------------------------


class _SpyConnection:
    """Passes frames through and tells the agent about every Ack (a task the coordinator has stored)."""

    def __init__(self, inner: Any, on_frame: Callable[[bytes], None]) -> None:
        self._inner = inner
        self._on_frame = on_frame

    def __getattr__(self, name: str) -> Any:  # challenge and whatever else the transport offers
        return getattr(self._inner, name)

    async def send(self, frame: bytes) -> None:
        await self._inner.send(frame)

    async def recv(self) -> bytes:
        frame = await self._inner.recv()
        self._on_frame(frame)
        return frame

    async def close(self) -> None:
        await self._inner.close()


class _SpyTransport:
    def __init__(self, on_frame: Callable[[bytes], None]) -> None:
        from p2c2r.gamer.transport import WebSocketTransport

        self._inner = WebSocketTransport()
        self._on_frame = on_frame

    async def connect(self, url: str) -> Any:
        return _SpyConnection(await self._inner.connect(url), self._on_frame)


@dataclass
class _Record:
    tag: str
    kind: str
    raw: Any
    source: str | None = None
    latency_ms: float | None = None
    server_latency_ms: float | None = None
    error: str | None = None
    verified: bool | None = None
    stream: bool = True  # part of the steady stream (the latency figures), not a burst

    @property
    def done(self) -> bool:
        return self.source is not None or self.error is not None


class _Agent:
    def __init__(self, url: str, seed: int) -> None:
        from p2c2r import protocol as p
        from p2c2r.gamer.client import GamerClient
        from p2c2r.tasks import registry

        self._p = p
        self.kinds = sorted(registry())
        self.rng = random.Random(seed)
        self.records: dict[str, _Record] = {}
        self.acked: set[str] = set()
        self.client = GamerClient(url, name="gamer", transport=_SpyTransport(self._on_frame), backoff_initial_s=0.1,
                                  backoff_max_s=1.0)
        self.stream: asyncio.Task[None] | None = None
        self.stream_tag = "0"
        self._i = 0

    def _on_frame(self, frame: bytes) -> None:
        for msg in self._p.decode_server_frame(frame):  # one message or a batch
            if isinstance(msg, self._p.Ack):
                self.acked.add(msg.task_id)

    def submit(self, kind: str, deadline_ms: int, tag: str, size: str = "small", *, stream: bool = True) -> None:
        from p2c2r.tasks import get_kind

        raw = get_kind(kind).example(self.rng, size)
        task_id = self.client.new_task_id()
        record = _Record(tag, kind, raw, stream=stream)
        self.records[task_id] = record
        fut = self.client.submit_nowait(kind, raw, deadline_ms=deadline_ms, task_id=task_id)
        fut.add_done_callback(lambda f: self._done(record, f))

    def _done(self, record: _Record, fut: asyncio.Future[Any]) -> None:
        from p2c2r.tasks import get_kind

        if fut.cancelled():
            record.error = "cancelled"
            return
        exc = fut.exception()
        if exc is not None:
            record.error = getattr(exc, "code", type(exc).__name__)
            return
        result = fut.result()
        kind = get_kind(record.kind)
        try:
            verdict = kind.verify(kind.parse_input(record.raw), kind.parse_output(result.output), random.Random(0))
            record.verified = bool(verdict.ok)
        except Exception:
            record.verified = False
        record.latency_ms = result.latency_ms
        record.server_latency_ms = result.server_latency_ms
        record.source = result.source

    async def _stream(self, hz: float, deadline_ms: int) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            kind = self.kinds[self._i % len(self.kinds)]
            self._i += 1
            self.submit(kind, deadline_ms, self.stream_tag)
            next_at += 1.0 / hz
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def status(self, *, full: bool = False) -> dict[str, Any]:
        tags: dict[str, dict[str, Any]] = {}
        for task_id, r in self.records.items():
            st = tags.setdefault(r.tag, {"submitted": 0, "acked": 0, "done": 0, "completed": 0, "failed": 0,
                                         "pending": 0, "sources": Counter(), "errors": Counter()})
            st["submitted"] += 1
            st["acked"] += task_id in self.acked or r.done
            if r.source is not None:
                st["completed"] += 1
                st["sources"][r.source] += 1
            elif r.error is not None:
                st["failed"] += 1
                st["errors"][r.error] += 1
            else:
                st["pending"] += 1
            st["done"] = st["completed"] + st["failed"]
        out: dict[str, Any] = {
            "ok": True,
            "connected": self.client.connected,
            "reconnects": self.client.reconnects,
            "pending": sum(1 for r in self.records.values() if not r.done),
            "tags": {t: {**st, "sources": dict(st["sources"]), "errors": dict(st["errors"])} for t, st in tags.items()},
        }
        if full:
            records = list(self.records.values())
            out["totals"] = {
                "submitted": len(records),
                "completed": sum(r.source is not None for r in records),
                "failed": sum(r.error is not None for r in records),
                "lost": sum(not r.done for r in records),
                "unverified": sum(r.verified is False for r in records),
            }
            out["records"] = [[r.tag, r.kind, r.source, r.latency_ms, r.stream, r.server_latency_ms] for r in records]
        return out

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        if op == "hello":
            await self.client.connect(timeout_s=60)
            return {"ok": True, "kinds": self.kinds}
        if op == "stream":
            self.stream_tag = str(cmd["tag"])
            if self.stream is not None:
                self.stream.cancel()
            self.stream = asyncio.get_running_loop().create_task(self._stream(float(cmd["hz"]), int(cmd["deadline_ms"])))
            return {"ok": True}
        if op == "tag":
            self.stream_tag = str(cmd["tag"])
            return {"ok": True}
        if op == "stop_stream":
            if self.stream is not None:
                self.stream.cancel()
                self.stream = None
            return {"ok": True}
        if op == "burst":
            for i in range(int(cmd["n"])):
                kind = cmd.get("kind") or self.kinds[i % len(self.kinds)]
                self.submit(kind, int(cmd["deadline_ms"]), str(cmd["tag"]), str(cmd.get("size") or "small"),
                            stream=False)
            return {"ok": True}
        if op == "status":
            return self.status()
        if op == "report":
            return self.status(full=True)
        if op == "quit":
            return {"ok": True, "quit": True}
        return {"ok": False, "error": f"unknown op {op!r}"}


def latency_table(records: list[list[Any]], tags: set[str] | None = None,
                  exclude: frozenset[str] | set[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Per kind: p50/p99 of the stream tasks a peer answered (``tags``: only those; none of ``exclude``),
    and how many the coordinator's own compute answered."""
    from p2c2r.quantiles import percentile

    by_kind: dict[str, list[float]] = defaultdict(list)
    cloud: Counter[str] = Counter()
    for tag, kind, source, latency_ms, stream, *_ in records:
        if not stream or (tags is not None and tag not in tags) or tag in exclude:
            continue
        if source == "peer" and latency_ms is not None:
            by_kind[kind].append(latency_ms)
        elif source == "cloud":
            cloud[kind] += 1
    return {
        kind: {"n": len(v), "p50_ms": round(percentile(v, 50), 3), "p99_ms": round(percentile(v, 99), 3),
               "cloud_n": cloud[kind]}
        for kind, v in sorted(by_kind.items())
    }


async def _agent_main(url: str, seed: int) -> int:
    agent = _Agent(url, seed)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            try:
                reply = await agent.handle(json.loads(line))
            except Exception as exc:  # the orchestrator hears of it and fails the step
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
            if reply.get("quit"):
                break
    finally:
        if agent.stream is not None:
            agent.stream.cancel()
        await agent.client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2c2r.netsim")
    sub = parser.add_subparsers(dest="command", required=True)
    agent = sub.add_parser("agent", help="(internal) the simulation's gamer, driven over stdin/stdout")
    agent.add_argument("--url", required=True)
    agent.add_argument("--seed", type=int, default=1)
    run = sub.add_parser("run", help="the failover drill (as test_network.py --simulate)")
    run.add_argument("--short", action="store_true")
    run.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto")
    run.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "agent":
        import logging

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        return asyncio.run(_agent_main(args.url, args.seed))
    return run_simulation(SimSettings(short=args.short, mode=args.mode, json_output=args.json))


if __name__ == "__main__":
    sys.exit(main())
