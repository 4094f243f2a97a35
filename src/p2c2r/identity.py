"""Identities: an Ed25519 key pair per peer and per gamer, and the handshake proof made with it.

Names are labels; keys are identities. A client creates its key pair on first run and keeps it in a file
only its user may read (mode 0600, folder 0700):

    $P2C2R_KEY_DIR/<role>-<name>.key                (if set)
    $XDG_CONFIG_HOME/p2c2r/<role>-<name>.key        (else, default ~/.config/p2c2r/...)

or wherever ``--key PATH`` says. Its id on the network is derived from the public key
(``client_id_for``: ``peer_`` or ``gamer_`` + 16 hex digits of its SHA-256), so the same key is the same
account across reconnects and coordinator restarts, and no one without the key can claim the id.

The proof costs no extra round trip. The coordinator answers the WebSocket upgrade request with a fresh
random nonce in the ``X-P2C2R-Challenge`` response header; the client's first frame, ``Hello``, carries its
public key and an Ed25519 signature over ``handshake_payload``: a MessagePack list that binds a domain
separation string, the role, the protocol version, the nonce and the public key. A signature made for one
connection, one role or one protocol version is useless for any other.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# The HTTP response header of the WebSocket upgrade that carries the coordinator's challenge (hex).
CHALLENGE_HEADER = "X-P2C2R-Challenge"
NONCE_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
# Domain separation: these signatures mean "I open a P2C2R session", and nothing else.
SIGNATURE_CONTEXT = "p2c2r-handshake-v1"
KEY_DIR_ENV = "P2C2R_KEY_DIR"
ROLES = ("peer", "gamer")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class IdentityError(Exception):
    """A key file could not be created, read or trusted; the message says what to do."""


def client_id_for(role: str, public_key: bytes) -> str:
    return f"{role}_{hashlib.sha256(public_key).hexdigest()[:16]}"


def handshake_payload(*, nonce: bytes, role: str, protocol: int, public_key: bytes) -> bytes:
    """The bytes a client signs to prove its key: unambiguous (MessagePack), bound to this connection."""
    return msgspec.msgpack.encode([SIGNATURE_CONTEXT, role, protocol, nonce, public_key])


def verify_handshake(*, public_key: bytes, signature: bytes, nonce: bytes, role: str, protocol: int) -> bool:
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES or len(nonce) != NONCE_BYTES:
        return False
    if is_weak_public_key(public_key):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, handshake_payload(nonce=nonce, role=role, protocol=protocol, public_key=public_key))
    except (InvalidSignature, ValueError):
        return False
    return True


# Weak keys. OpenSSL's Ed25519 verification (what ``cryptography`` uses) accepts a public key of small order:
# with the all-zero key and the all-zero signature it passes for about a third of all messages, so such a
# "key" has no owner and anyone could sign in as it (the fuzzer found this). A point whose multiple by the
# cofactor 8 is the identity is refused, as is an encoding that is not a point or not canonical. Edwards
# arithmetic as in RFC 8032, section 6, in extended coordinates; three doublings, well under a millisecond.
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(encoded: bytes) -> tuple[int, int, int, int] | None:
    y = int.from_bytes(encoded, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else (0, y, 1, 0)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y, 1, x * y % _P


def _double(pt: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x, y, z, t = pt
    a, b = (y - x) * (y - x) % _P, (y + x) * (y + x) % _P
    c, d = 2 * t * t * _D % _P, 2 * z * z % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def is_weak_public_key(public_key: bytes) -> bool:
    """True for what is not a usable Ed25519 public key: not 32 bytes, not a canonical curve point, or of
    small order (a point no private key stands behind)."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        return True
    point = _decode_point(public_key)
    if point is None:
        return True
    for _ in range(3):
        point = _double(point)
    x, y, z, _ = point
    return x % _P == 0 and (y - z) % _P == 0  # 8 * point is the identity (0, 1)


def parse_nonce(header_value: str | None) -> bytes | None:
    if not header_value:
        return None
    try:
        nonce = bytes.fromhex(header_value.strip())
    except ValueError:
        return None
    return nonce if len(nonce) == NONCE_BYTES else None


def default_key_dir() -> Path:
    env = os.environ.get(KEY_DIR_ENV)
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "p2c2r"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "p2c2r"


def default_key_path(role: str, name: str) -> Path:
    safe = _UNSAFE.sub("_", name)[:64] or "default"
    return default_key_dir() / f"{role}-{safe}.key"


@dataclass(frozen=True)
class Identity:
    """A private key and where it lives. ``sign_handshake`` is all a client needs for the handshake."""

    private_key: Ed25519PrivateKey
    path: Path | None = None
    created: bool = False

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: str | Path) -> Identity:
        """The key at ``path``; a new one is made (0600, in a 0700 folder) when there is none yet."""
        path = Path(path).expanduser()
        if path.exists():
            return cls(_load(path), path, created=False)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use that one
            return cls(_load(path), path, created=False)
        except OSError as exc:
            raise IdentityError(f"cannot create the key file {path}: {exc.strerror or exc}; "
                                f"choose another place with --key PATH or {KEY_DIR_ENV}") from exc
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return cls(key, path, created=True)

    @classmethod
    def for_role(cls, role: str, name: str, key_path: str | Path | None = None) -> Identity:
        return cls.load_or_create(key_path or default_key_path(role, name))

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def client_id(self, role: str) -> str:
        return client_id_for(role, self.public_key)

    def sign_handshake(self, *, nonce: bytes, role: str, protocol: int) -> bytes:
        return self.private_key.sign(
            handshake_payload(nonce=nonce, role=role, protocol=protocol, public_key=self.public_key))

    def describe(self, role: str) -> str:
        where = f"key {self.path}" if self.path else "key in memory"
        return f"{self.client_id(role)} ({'new ' if self.created else ''}{where})"


def _load(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(f"the key file {path} is open to other users (mode {stat.S_IMODE(mode):o}); "
                                f"run: chmod 600 {path}")
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read the key file {path}: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key
