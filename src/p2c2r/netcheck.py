"""``test_network.py --cloud-ip HOST``: is this network working, seen from this device? (the seed's test_network.py)

Checks, in order, each printed PASS or FAIL, with the seed's troubleshooting hint for a failure:

    address     the host name resolves
    port        a TCP connection to HOST:PORT opens (refused: nothing listens; timeout: a firewall)
    http        GET /healthz answers 200 (a P2C2R coordinator with a writable database is there)
    handshake   the WebSocket handshake as a gamer completes
    peers       /api/stats lists at least one connected peer
    <kind>      for every task kind: an example task makes the round trip through a peer (source "peer";
                "cloud" means the coordinator had to compute it itself) and the result verifies here
    latency     per kind, the median round trip is within the seed's 200 ms budget

A check whose prerequisite failed is shown as SKIP. The exit code is 0 only when every check passed.
``--simulate`` runs the three-host failover drill instead (``p2c2r.netsim``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import socket
import ssl
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from p2c2r.endpoints import client_ssl_context, cloud_url, http_url
from p2c2r.errors import HandshakeError, TaskFailed
from p2c2r.network_config import DEFAULT_PORT

# The seed's Network Requirements: "Latency: < 200ms acceptable (internet latency)".
LATENCY_BUDGET_MS = 200.0
# Long enough that a connected peer always gets the task before the coordinator falls back to its own compute.
CHECK_DEADLINE_MS = 10_000

# The seed's Troubleshooting, one hint per kind of failure.
HINT_ADDRESS = (
    "The address does not resolve. Check --cloud-ip for typos. With ngrok, use the host and port that "
    "`ngrok tcp 8765` prints now: a free ngrok address changes at every restart."
)
HINT_REFUSED = (
    "Nothing accepts connections on that port: is run_cloud.py running on the cloud server, on this port "
    "(default 8765)? With ngrok, is `ngrok tcp 8765` still running, and did you pass its port with --cloud-port?"
)
HINT_FIREWALL = (
    "No answer at all: a firewall drops the connection. On the cloud server: `sudo ufw status` and "
    "`sudo ufw allow 8765`; on AWS/DigitalOcean open TCP 8765 in the security group/firewall; at home, "
    "forward the port on the router. No public IP yet? Test with ngrok (`ngrok tcp 8765`)."
)
HINT_NOT_COORDINATOR = (
    "Something answers on the port, but not a P2C2R coordinator of this version. Check the port "
    "(`curl http://HOST:8765` should describe the P2C2R coordinator) and that run_cloud.py is up to date."
)
HINT_TLS = (
    "The TLS handshake failed: use --tls only with a coordinator started with --certfile/--keyfile, and give "
    "--cafile for a self-signed certificate."
)
HINT_AUTH = (
    "The coordinator does not let this key in (a closed coordinator admits only allow-listed keys): ask its "
    "operator to run `p2c2r admin add <id>` with the id shown above, or pass --key with an allowed key."
)
HINT_NO_PEER = (
    "No peer is connected. Verify the peer is actually running: `python3 run_peer.py --cloud-ip HOST "
    "--cloud-port PORT` on the peer device must print 'Connected!'. A peer that cannot connect needs the same "
    "fixes as above (firewall, port 8765 open, ngrok address)."
)
HINT_NO_PEER_TOOK_IT = (
    "No peer computed the task: the coordinator fell back to its own compute. Verify the peer is actually "
    "running and connected, and check the cloud logs for routing errors."
)
HINT_TASK_FAILED = (
    "Tasks timing out or failing? Verify the peer is actually running, check the cloud logs for routing "
    "errors, check that the internet connection is stable, and try simpler tasks first (ai_npc_dialogue)."
)
HINT_BAD_RESULT = (
    "The result does not verify on this device: the peer and this device run different kernel versions, or "
    "the peer is faulty. Update both, and check the cloud logs for invalid results."
)
HINT_LATENCY = (
    "High latency. 100-200 ms is normal over the internet; contributors closer to the cloud server give lower "
    "latency; consider cloud servers in several regions (US, EU, Asia); check the connection is stable."
)


@dataclass
class Check:
    name: str
    status: str  # "PASS", "FAIL" or "SKIP"
    detail: str
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


@dataclass
class Report:
    url: str
    checks: list[Check] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "passed": self.passed,
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "hint": c.hint} for c in self.checks],
            "latency_ms": self.latency_ms,
        }


class _Printer:
    def __init__(self, out: Callable[[str], None] | None) -> None:
        self.out = out

    def __call__(self, check: Check) -> None:
        if self.out is None:
            return
        self.out(f"{check.status:<4}  {check.name:<24} {check.detail}")
        if check.hint and check.status == "FAIL":
            self.out(f"      💡 {check.hint}")


async def check_network(
    cloud_ip: str,
    cloud_port: int = DEFAULT_PORT,
    *,
    tls: bool = False,
    cafile: str | None = None,
    name: str | None = None,
    key_path: str | None = None,
    samples: int = 3,
    budget_ms: float = LATENCY_BUDGET_MS,
    timeout_s: float = 10.0,
    out: Callable[[str], None] | None = print,
) -> Report:
    """Run every check against a running coordinator; ``out`` gets one line per check as it finishes."""
    url = cloud_url(cloud_ip, cloud_port, tls=tls)
    report = Report(url)
    show = _Printer(out)

    def add(check: Check) -> Check:
        report.checks.append(check)
        show(check)
        return check

    if out is not None:
        out(f"🔍 P2C2R network check: {url}")
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or cloud_ip, parts.port or (443 if parts.scheme == "wss" else 80)
    from p2c2r.tasks import registry

    kinds = sorted(registry())
    later = ["http", "handshake", "peers", *kinds, *(f"latency {k}" for k in kinds)]

    def skip_rest(names: list[str], why: str) -> Report:
        for n in names:
            add(Check(n, "SKIP", why))
        return report

    # 1. The address.
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        address = infos[0][4][0]
        add(Check("address", "PASS", f"{host} is {address}"))
    except OSError as exc:
        add(Check("address", "FAIL", f"{host} does not resolve: {exc}", HINT_ADDRESS))
        return skip_rest(["port", *later], "the address does not resolve")

    # 2. The port.
    t0 = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        writer.close()
        add(Check("port", "PASS", f"TCP connection to {address}:{port} opened in {_ms(t0):.0f} ms"))
    except TimeoutError:
        add(Check("port", "FAIL", f"no answer from {address}:{port} within {timeout_s:g} s", HINT_FIREWALL))
        return skip_rest(later, "the port is not reachable")
    except ConnectionRefusedError:
        add(Check("port", "FAIL", f"{address}:{port} refused the connection", HINT_REFUSED))
        return skip_rest(later, "the port is not reachable")
    except OSError as exc:
        unreachable = exc.errno in (101, 113)  # ENETUNREACH, EHOSTUNREACH
        add(Check("port", "FAIL", f"cannot connect to {address}:{port}: {exc.strerror or exc}",
                  HINT_FIREWALL if unreachable else HINT_REFUSED))
        return skip_rest(later, "the port is not reachable")

    # 3. Plain HTTP on the same port.
    ctx = client_ssl_context(url, cafile)
    base = http_url(url)
    t0 = time.perf_counter()
    status, body, error = await asyncio.to_thread(_http_get, base + "/healthz", ctx, timeout_s)
    if status == 200 and body.strip() == b"ok":
        add(Check("http", "PASS", f"GET {base}/healthz answered 200 ok in {_ms(t0):.0f} ms"))
    elif status == 503:
        add(Check("http", "FAIL", f"the coordinator says: {body.decode(errors='replace').strip()}",
                  "The coordinator's database is not writable: check the disk and --db on the cloud server."))
    else:
        what = f"HTTP {status}" if status else (error or "no HTTP answer")
        hint = HINT_TLS if isinstance(error, str) and "SSL" in error.upper() else HINT_NOT_COORDINATOR
        add(Check("http", "FAIL", f"GET {base}/healthz: {what}", hint))
        return skip_rest(later[1:], "no coordinator answers on this port")

    # 4. The WebSocket handshake, as a gamer.
    from p2c2r.gamer.client import GamerClient
    from p2c2r.gamer.transport import WebSocketTransport

    client = GamerClient(url, name=name or f"netcheck_{socket.gethostname()}", reconnect=False, key_path=key_path,
                         transport=WebSocketTransport(ssl_context=ctx, open_timeout_s=timeout_s))
    try:
        t0 = time.perf_counter()
        try:
            await client.connect(timeout_s=timeout_s)
        except HandshakeError as exc:
            from p2c2r import protocol as p

            auth = exc.close_code == p.CLOSE_AUTH_FAILED or exc.code in ("auth_failed", "not_allowed")
            who = f" (this check's id: {client.identity.client_id('gamer')})" if auth else ""
            add(Check("handshake", "FAIL", f"the coordinator refused the handshake: {exc.message}{who}",
                      HINT_AUTH if auth else HINT_NOT_COORDINATOR))
            return skip_rest(later[2:], "no WebSocket session")
        except (TimeoutError, ConnectionError, OSError) as exc:
            add(Check("handshake", "FAIL", f"no WebSocket session: {exc}", HINT_NOT_COORDINATOR))
            return skip_rest(later[2:], "no WebSocket session")
        add(Check("handshake", "PASS", f"WebSocket handshake as a gamer in {_ms(t0):.0f} ms (id {client.client_id})"))

        # 5. Peers.
        status, body, error = await asyncio.to_thread(_http_get, base + "/api/stats", ctx, timeout_s)
        try:
            peers = json.loads(body)["peers"] if status == 200 else None
        except (ValueError, KeyError, TypeError):
            peers = None
        if peers is None:
            add(Check("peers", "FAIL", f"GET /api/stats: {f'HTTP {status}' if status else error}", HINT_NOT_COORDINATOR))
            return skip_rest(later[3:], "peers unknown")
        if not peers:
            add(Check("peers", "FAIL", "no peer is connected to the coordinator", HINT_NO_PEER))
            return skip_rest(later[3:], "no peer to run tasks")
        listed = ", ".join(f"{p.get('name', '?')} ({p.get('slots', '?')} slot(s))" for p in peers[:5])
        add(Check("peers", "PASS", f"{len(peers)} peer(s) connected: {listed}{' ...' if len(peers) > 5 else ''}"))

        # 6. A round trip of every kind through a peer, verified here.
        await check_kinds(client, kinds, samples, add, report)
    finally:
        await client.close()

    # 7. Latency per kind against the budget.
    for kind in kinds:
        add(latency_check(kind, report.latency_ms.get(kind, []), budget_ms))
    return report


def latency_check(kind: str, latencies_ms: list[float], budget_ms: float = LATENCY_BUDGET_MS) -> Check:
    if not latencies_ms:
        return Check(f"latency {kind}", "SKIP", "no round trip through a peer to time")
    p50 = statistics.median(latencies_ms)
    detail = (f"median {p50:.0f} ms over {len(latencies_ms)} task(s) (max {max(latencies_ms):.0f} ms), "
              f"budget {budget_ms:.0f} ms")
    return Check(f"latency {kind}", "PASS" if p50 <= budget_ms else "FAIL", detail, HINT_LATENCY)


async def check_kinds(client: Any, kinds: list[str], samples: int, add: Callable[[Check], Check], report: Report) -> None:
    """``samples`` fresh example tasks of each kind through ``client`` (a connected ``GamerClient``): one check
    per kind, added with ``add``; the round trips of those that passed go to ``report.latency_ms``."""
    from p2c2r.tasks import get_kind

    rng = random.Random(secrets.randbits(64))  # fresh inputs: a cached answer would prove nothing
    for kind_name in kinds:
        kind = get_kind(kind_name)
        latencies: list[float] = []
        problem: Check | None = None
        cached = 0
        attempts = 0
        while len(latencies) < samples and problem is None and attempts < samples + 3:
            attempts += 1
            raw = kind.example(rng, "small")
            try:
                result = await asyncio.wait_for(client.submit(kind_name, raw, deadline_ms=CHECK_DEADLINE_MS),
                                                CHECK_DEADLINE_MS / 1000.0 + 20.0)
            except TaskFailed as exc:
                problem = Check(kind_name, "FAIL", f"the task failed: {exc.code}: {exc.reason}", HINT_TASK_FAILED)
                break
            except TimeoutError:
                problem = Check(kind_name, "FAIL", "no answer to the task", HINT_TASK_FAILED)
                break
            if result.source == "cache":  # someone sent this very input before: draw another
                cached += 1
                continue
            if result.source != "peer":
                problem = Check(kind_name, "FAIL", f"answered by source '{result.source}', not by a peer",
                                HINT_NO_PEER_TOOK_IT)
                break
            try:
                verdict = kind.verify(kind.parse_input(raw), kind.parse_output(result.output), random.Random(attempts))
            except Exception as exc:  # a malformed output is a failed verification, whatever it raised
                verdict = None
                reason = f"{type(exc).__name__}: {exc}"
            else:
                reason = verdict.reason
            if verdict is None or not verdict.ok:
                problem = Check(kind_name, "FAIL", f"the peer's result does not verify: {reason}", HINT_BAD_RESULT)
                break
            latencies.append(result.latency_ms)
        if latencies:
            report.latency_ms[kind_name] = [round(v, 3) for v in latencies]
        if problem is None and len(latencies) < samples:
            problem = Check(kind_name, "FAIL", f"only {len(latencies)} of {samples} task(s) reached a peer "
                            f"({cached} answered from cache)", HINT_NO_PEER_TOOK_IT)
        add(problem or Check(kind_name, "PASS", f"{samples} task(s) through a peer and back, verified here"))


def _http_get(url: str, ctx: ssl.SSLContext | None, timeout_s: float) -> tuple[int, bytes, str | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=ctx) as resp:
            return resp.status, resp.read(), None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, b"", str(reason)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


# Command line -------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cloud-ip", help="coordinator host or address, or a ws:// / wss:// URL (not with --simulate)")
    parser.add_argument("--cloud-port", type=int, default=DEFAULT_PORT, help=f"coordinator port (default {DEFAULT_PORT})")
    parser.add_argument("--tls", action="store_true", help="connect with wss:// (TLS), verifying the certificate")
    parser.add_argument("--cafile", help="CA certificate to verify the coordinator with (default: system store)")
    parser.add_argument("--name", help="the gamer label this check uses (default: netcheck_<host name>)")
    parser.add_argument("--key", metavar="PATH",
                        help="the gamer identity key to check with, made on first use (default: gamer-<name>.key "
                             "in $P2C2R_KEY_DIR or ~/.config/p2c2r); a closed coordinator must know it")
    parser.add_argument("--samples", type=int, default=3, help="tasks of each kind to send (default 3)")
    parser.add_argument("--budget-ms", type=float, default=LATENCY_BUDGET_MS,
                        help=f"latency budget per kind, median round trip (default {LATENCY_BUDGET_MS:.0f})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each connection (default 10)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    sim = parser.add_argument_group("simulation (three hosts on this machine, the seed's failover drill)")
    sim.add_argument("--simulate", action="store_true", help="build three hosts here and run the failover drill")
    sim.add_argument("--short", action="store_true", help="with --simulate: the short drill (about a minute)")
    sim.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto",
                     help="with --simulate: network namespaces (root) or loopback ports (default: auto)")


def run_from_args(args: argparse.Namespace) -> int:
    if args.simulate:
        from p2c2r.netsim import SimSettings, run_simulation

        return run_simulation(SimSettings(short=args.short, mode=args.mode, json_output=args.json))
    if not args.cloud_ip:
        print("❌ give --cloud-ip HOST (the coordinator to check), or --simulate", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(check_network(args.cloud_ip, args.cloud_port, tls=args.tls, cafile=args.cafile,
                                           name=args.name, key_path=args.key, samples=max(1, args.samples),
                                           budget_ms=args.budget_ms,
                                           timeout_s=args.timeout))
    except ValueError as exc:  # a malformed --cloud-ip
        print(f"❌ {exc}", file=sys.stderr)
        return 2
    failed = [c for c in report.checks if not c.passed]
    print("")
    if report.passed:
        print(f"✅ All {len(report.checks)} checks passed: the network works from this device.")
    else:
        n_fail = sum(c.status == "FAIL" for c in failed)
        print(f"❌ {n_fail} check(s) failed, {len(failed) - n_fail} skipped, of {len(report.checks)}.")
    if args.json:
        print(json.dumps(report.as_dict()))
    return 0 if report.passed else 1
