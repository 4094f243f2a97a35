"""Turning the seed's ``--cloud-ip HOST --cloud-port PORT`` into a WebSocket URL and TLS context."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from p2c2r.network_config import DEFAULT_PORT


def cloud_url(cloud_ip: str, cloud_port: int = DEFAULT_PORT, *, tls: bool = False) -> str:
    """``HOST`` -> ``ws://HOST:PORT``; a ``ws://`` or ``wss://`` URL is taken as it is."""
    if cloud_ip.startswith(("ws://", "wss://")):
        parts = urlsplit(cloud_ip)
        if not parts.hostname:
            raise ValueError(f"no host in {cloud_ip!r}")
        return cloud_ip
    if "://" in cloud_ip:
        raise ValueError(f"--cloud-ip takes a host name, an address, or a ws:// or wss:// URL, not {cloud_ip!r}")
    host = f"[{cloud_ip}]" if ":" in cloud_ip and not cloud_ip.startswith("[") else cloud_ip
    return f"{'wss' if tls else 'ws'}://{host}:{cloud_port}"


def http_url(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


def client_ssl_context(url: str, cafile: str | None = None, *, insecure: bool = False) -> ssl.SSLContext | None:
    """Verified TLS for ``wss://`` (against ``cafile`` or the system store); None for ``ws://``."""
    if not url.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(cafile=cafile)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
