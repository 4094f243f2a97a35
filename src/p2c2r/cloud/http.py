"""Plain HTTP on the coordinator's WebSocket port: /healthz and /api/stats (the dashboard builds on this).

websockets hands every request to ``process_request`` before the upgrade; a request that is not a
WebSocket upgrade is answered here, so ``curl http://HOST:8765`` works as the seed's troubleshooting expects.
"""

from __future__ import annotations

import http
import json
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from p2c2r.cloud.coordinator import Coordinator


def response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    headers = Headers({"Content-Type": content_type, "Content-Length": str(len(body)), "Cache-Control": "no-store"})
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def json_response(status: int, payload: Any) -> Response:
    return response(status, json.dumps(payload, indent=1).encode(), "application/json")


def is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.get("Upgrade", "").lower()


class HttpRoutes:
    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        if is_upgrade(request):
            return None
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            if self.coordinator.store.is_writable():
                return response(200, b"ok\n", "text/plain; charset=utf-8")
            return response(503, b"database not writable\n", "text/plain; charset=utf-8")
        if path == "/api/stats":
            return json_response(200, self.coordinator.public_stats())
        if path == "/":
            body = (
                b"P2C2R coordinator: WebSocket endpoint for peers and gamers.\n"
                b"GET /healthz for health, /api/stats for JSON statistics.\n"
            )
            return response(200, body, "text/plain; charset=utf-8")
        return response(404, f"no such page: {path}\n".encode(), "text/plain; charset=utf-8")
