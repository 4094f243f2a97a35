"""wss:// and https:// end to end: a CA and a server certificate made here, real coordinator and peer processes."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import random
import ssl
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2c2r.gamer.client import GamerClient
from p2c2r.tasks import get_kind
from tests.procs import scaled, wait_until


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a throwaway CA and a certificate for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("P2C2R test CA")).issuer_name(_name("P2C2R test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder().subject_name(_name("p2c2r coordinator")).issuer_name(ca_cert.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(server_key))
    paths[2].chmod(0o600)
    return paths


@pytest.fixture
def tls_cloud(procs, tmp_path):
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    cloud = procs.cloud(extra=["--certfile", str(cert), "--keyfile", str(key)])
    assert "(wss://, https:// on the same port)" in cloud.output
    return cloud, ca


async def test_wss_and_https_work_with_the_ca(procs, tls_cloud):
    cloud, ca = tls_cloud
    procs.peer(cloud, "tls_peer", extra=["--tls", "--cafile", str(ca)])
    context = ssl.create_default_context(cafile=str(ca))
    for host in ("127.0.0.1", "localhost"):
        with urllib.request.urlopen(f"https://{host}:{cloud.port}/healthz", context=context, timeout=scaled(10)) as r:
            assert (r.status, r.read()) == (200, b"ok\n")

    def stats() -> dict:
        import json

        with urllib.request.urlopen(f"https://127.0.0.1:{cloud.port}/api/stats", context=context,
                                    timeout=scaled(10)) as r:
            return json.loads(r.read())

    wait_until(lambda: len(stats()["peers"]) == 1, 90, "the peer to connect over wss://")
    task_input = get_kind("ai_npc_dialogue").example(random.Random(61), "small")
    async with GamerClient(f"wss://localhost:{cloud.port}", name="tls_gamer", cafile=str(ca)) as client:
        result = await asyncio.wait_for(client.submit("ai_npc_dialogue", task_input, deadline_ms=60_000), scaled(30))
    assert result.source == "peer"


async def test_without_the_ca_the_certificate_is_refused_with_a_clear_error(procs, tls_cloud):
    cloud, _ = tls_cloud
    started = time.monotonic()
    client = GamerClient(f"wss://127.0.0.1:{cloud.port}", name="untrusting_gamer")
    with pytest.raises(ConnectionError) as info:
        await client.connect(timeout_s=scaled(30))
    await client.close()
    assert "could not be verified" in str(info.value) and "--cafile" in str(info.value)
    assert time.monotonic() - started < scaled(10)  # at once, not after retrying until a timeout

    peer = procs.peer(cloud, "untrusting_peer", extra=["--tls"])
    wait_until(lambda: not peer.alive(), 60, "the peer to give up")
    assert peer.popen.returncode == 1
    assert "could not be verified" in peer.output and "--cafile" in peer.output
