"""Plain HTTP on the coordinator's WebSocket port: the dashboard, /healthz, /api/stats and /metrics.

websockets hands every request to ``process_request`` before the upgrade; a request that is not a
WebSocket upgrade is answered here, so ``curl http://HOST:8765`` works as the seed's troubleshooting expects.
The dashboard's live feed is a WebSocket at ``/live`` (``live.py``), handed over by the server.

Routes:

    GET /             the dashboard (HTML, JS and CSS shipped in the package; nothing from a CDN)
    GET /healthz      200 "ok" while serving with a writable database, 503 otherwise
    GET /api/stats    JSON snapshot; gamer identities only with the admin token
    GET /metrics      Prometheus text format (this coordinator's own registry)
    WS  /live         snapshots every second and events as they happen, for the dashboard

The admin token goes in ``Authorization: Bearer <token>`` or ``?token=<token>``.
"""

from __future__ import annotations

import http
import json
import secrets
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from p2c2r.cloud.coordinator import stats_snapshot
from p2c2r.cloud.live import LiveFeed, recent_events
from p2c2r.cloud.metrics import Telemetry

if TYPE_CHECKING:
    from p2c2r.cloud.coordinator import Coordinator

ASSET_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# The page may talk to its own origin only; its WebSocket is same-origin too.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    headers = Headers({"Content-Type": content_type, "Content-Length": str(len(body)), "Cache-Control": "no-store"})
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def json_response(status: int, payload: Any) -> Response:
    return response(status, json.dumps(payload, indent=1, default=str).encode(), "application/json")


def is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


def load_dashboard_assets() -> dict[str, tuple[bytes, str]]:
    """Every file of ``dashboard/`` by URL path; ``/`` is its index.html."""
    assets: dict[str, tuple[bytes, str]] = {}
    folder = resources.files("p2c2r.cloud").joinpath("dashboard")
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in ASSET_TYPES:
            assets["/" + entry.name] = (entry.read_bytes(), ASSET_TYPES[suffix])
    if "/index.html" in assets:
        assets["/"] = assets["/index.html"]
    return assets


class HttpRoutes:
    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.telemetry = Telemetry(coordinator)
        self.live = LiveFeed(coordinator, lambda admin: self.snapshot(admin=admin))
        self.assets = load_dashboard_assets()

    # Access -----------------------------------------------------------------------------------------

    def is_admin(self, request: Request) -> bool:
        expected = self.coordinator.admin_token
        if not expected:
            return False
        offered = ""
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            offered = auth[7:].strip()
        else:
            offered = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        return bool(offered) and secrets.compare_digest(offered.encode(), expected.encode())

    # Documents --------------------------------------------------------------------------------------

    def snapshot(self, *, admin: bool) -> dict[str, Any]:
        """What /api/stats and every live snapshot carry: the coordinator's stats plus recent history."""
        stats = stats_snapshot(self.coordinator, include_gamers=admin)
        stats["recent"] = self.telemetry.recent()
        return stats

    def api_stats(self, *, admin: bool) -> dict[str, Any]:
        stats = self.snapshot(admin=admin)
        stats["events"] = recent_events(self.coordinator, admin=admin)
        return stats

    # Serving ----------------------------------------------------------------------------------------

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        if is_upgrade(request):
            return None
        path = urlsplit(request.path).path
        if path == "/healthz":
            if self.coordinator.store.is_writable():
                return response(200, b"ok\n", "text/plain; charset=utf-8")
            return response(503, b"database not writable\n", "text/plain; charset=utf-8")
        if path == "/api/stats":
            return json_response(200, self.api_stats(admin=self.is_admin(request)))
        if path == "/metrics":
            return response(200, self.telemetry.render(), CONTENT_TYPE_LATEST)
        asset = self.assets.get(path)
        if asset is not None:
            body, content_type = asset
            return response(200, body, content_type, PAGE_HEADERS)
        if path == "/":  # the package was installed without its dashboard files
            body = (
                b"P2C2R coordinator: WebSocket endpoint for peers and gamers.\n"
                b"GET /healthz for health, /api/stats for JSON statistics, /metrics for Prometheus.\n"
            )
            return response(200, body, "text/plain; charset=utf-8")
        return response(404, f"no such page: {path}\n".encode(), "text/plain; charset=utf-8")

    async def serve_live(self, ws: ServerConnection) -> None:
        """The ``/live`` WebSocket (called by the server's connection handler)."""
        await self.live.serve(ws, admin=ws.request is not None and self.is_admin(ws.request))

    async def close(self) -> None:
        await self.live.close()
        self.telemetry.close()
