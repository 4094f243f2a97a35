"""Identity keys: made once with private permissions, reused, and proving exactly one connection, role and version."""

from __future__ import annotations

import os
import stat

import pytest

from p2c2r.identity import (
    Identity,
    IdentityError,
    client_id_for,
    default_key_path,
    is_weak_public_key,
    parse_nonce,
    verify_handshake,
)

NONCE = bytes(range(32))


def test_a_key_is_made_once_with_private_permissions_and_reused(tmp_path):
    path = tmp_path / "conf" / "p2c2r" / "peer-laptop.key"
    first = Identity.load_or_create(path)
    assert first.created and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = Identity.load_or_create(path)
    assert not again.created
    assert again.public_key == first.public_key
    assert again.client_id("peer") == first.client_id("peer")


def test_ids_are_derived_from_the_key_and_role():
    identity = Identity.generate()
    peer_id = identity.client_id("peer")
    assert peer_id == client_id_for("peer", identity.public_key)
    assert peer_id.startswith("peer_") and len(peer_id) == len("peer_") + 16
    assert identity.client_id("gamer") == "gamer_" + peer_id.removeprefix("peer_")
    assert Identity.generate().client_id("peer") != peer_id


def test_a_key_file_open_to_others_is_refused(tmp_path):
    path = tmp_path / "gamer-x.key"
    Identity.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        Identity.load_or_create(path)


def test_a_file_that_is_not_a_key_is_refused_with_its_path(tmp_path):
    path = tmp_path / "gamer-y.key"
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match=str(path)):
        Identity.load_or_create(path)


def test_default_path_honours_the_env_and_makes_names_safe(tmp_path, monkeypatch):
    monkeypatch.setenv("P2C2R_KEY_DIR", str(tmp_path))
    assert default_key_path("gamer", "Ann's PC/1") == tmp_path / "gamer-Ann_s_PC_1.key"
    monkeypatch.delenv("P2C2R_KEY_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_key_path("peer", "p") == tmp_path / "xdg" / "p2c2r" / "peer-p.key"


def test_the_signature_binds_nonce_role_protocol_and_key():
    identity = Identity.generate()
    sig = identity.sign_handshake(nonce=NONCE, role="peer", protocol=1)
    good = dict(public_key=identity.public_key, signature=sig, nonce=NONCE, role="peer", protocol=1)
    assert verify_handshake(**good)
    assert not verify_handshake(**{**good, "nonce": bytes(32)})  # another connection's challenge
    assert not verify_handshake(**{**good, "role": "gamer"})  # another role
    assert not verify_handshake(**{**good, "protocol": 2})  # another protocol version
    assert not verify_handshake(**{**good, "public_key": Identity.generate().public_key})  # another key
    assert not verify_handshake(**{**good, "signature": sig[:-1] + bytes([sig[-1] ^ 1])})
    assert not verify_handshake(**{**good, "public_key": b"short"})
    assert not verify_handshake(**{**good, "public_key": b"\xff" * 32})  # not a point on the curve


def test_nonces_are_parsed_strictly():
    assert parse_nonce(NONCE.hex()) == NONCE
    for bad in (None, "", "zz" * 32, NONCE.hex()[:-2], NONCE.hex() + "00"):
        assert parse_nonce(bad) is None


# The 8 points of small order (the torsion subgroup), as encoded public keys.
SMALL_ORDER_KEYS = [bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
)]


def test_keys_of_small_order_are_refused():
    # Found by the fuzzer: OpenSSL accepts the all-zero key with the all-zero signature for about a third of
    # all messages, so such a key has no owner and anyone could sign in as it.
    assert all(is_weak_public_key(key) for key in SMALL_ORDER_KEYS)
    for i in range(64):
        nonce = i.to_bytes(32, "little")
        for key in SMALL_ORDER_KEYS:
            assert not verify_handshake(public_key=key, signature=bytes(64), nonce=nonce, role="gamer", protocol=1)
    assert not any(is_weak_public_key(Identity.generate().public_key) for _ in range(50))
    non_canonical = ((2**255 - 19) + 1).to_bytes(32, "little")  # y = p + 1, the identity encoded the long way
    assert is_weak_public_key(non_canonical) and is_weak_public_key(b"\x05" * 31)
