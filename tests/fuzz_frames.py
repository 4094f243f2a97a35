"""Hostile frames for fuzzing a live coordinator, and what it must answer to each.

Two generators of the same families of frames: hypothesis strategies (``frames(...)``, for the pytest
property test, which shrinks a failure to a minimal list of frames) and a seeded ``random.Random`` one
(``random_frame``, for ``bench/bench_fuzz.py``, which needs 100,000 of them quickly). Families:

    shaped      a MessagePack map with a real or made-up ``type`` and fields of any type, missing or extra
    valid       a well-formed client message, often wrong for the role or the moment (a Hello after the
                handshake, a PeerResult from a gamer, a Submit from a peer), or a server message
    mutated     a valid frame with bytes flipped, inserted, deleted, duplicated or cut off
    oversized   over the coordinator's message limit (but under twice it, where websockets would close)
    text        a text frame (the protocol is binary only)

``expected`` says what the coordinator owes each frame after the handshake, judged by the protocol's own
decoder: an ``Error`` for every frame that does not decode, and for every decodable one the answer its
message type calls for (see ``Expect``).
"""

from __future__ import annotations

import enum
import random
from typing import Any

import msgspec
from hypothesis import strategies as st

from p2c2r import protocol as p
from p2c2r.errors import RemoteProtocolError
from p2c2r.tasks import get_kind, registry

Frame = bytes | str

CLIENT_TAGS = ["hello", "submit", "fetch", "stats_request", "heartbeat", "peer_result", "peer_error"]
SERVER_TAGS = ["welcome", "ack", "result", "error", "stats", "assign", "cancel", "earned"]
ALL_TAGS = CLIENT_TAGS + SERVER_TAGS
FIELD_NAMES = sorted({f for cls in (p.Hello, p.Welcome, p.Submit, p.Ack, p.Result, p.Fetch, p.Stats, p.Heartbeat,
                                    p.Error, p.Assign, p.Cancel, p.PeerResult, p.PeerError, p.Earned)
                      for f in cls.__struct_fields__})
KINDS = ["physics", "ai_pathfinding", "rt_reflections", "ai_npc_dialogue", "warp_drive", ""]
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"
# Public keys of small order: OpenSSL lets anyone "sign" for them with an all-zero signature, often enough.
WEAK_KEYS = [bytes(32), (1).to_bytes(32, "little"), bytes.fromhex(
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")]
# Well-formed task inputs of every kind: submits that pass validation and reach the balance check.
EXAMPLES = [(kind, get_kind(kind).example(random.Random(i), "small")) for kind in sorted(registry()) for i in range(2)]
# Task ids the honest gamer uses: the fuzzer asks for them too, and must never get them.
HONEST_PREFIX = "honest-"


class Expect(enum.Enum):
    ERROR = "error"  # exactly one Error, before the sentinel's answer
    TASK_ERROR = "task_error"  # one Error carrying the submitted task id (may come after the sentinel)
    UNKNOWN_TASK = "unknown_task"  # one Error, code unknown_task
    STATS = "stats"  # one Stats
    NOTHING = "nothing"  # no answer (a heartbeat)


def expected(frame: Frame, role: str, max_bytes: int) -> list[tuple[Expect, str | None, str | None]]:
    """What a coordinator owes ``frame`` from an authenticated ``role`` whose gamer has no funds and whose
    peer has no assignment: one (expectation, fixed Error code or None, submitted task id or None) per
    message of the frame (a batch frame holds several; see p2c2r.protocol)."""
    return [_expected_for(msg, role) for msg in p.decode_client_frame(frame, max_bytes=max_bytes)]


def _expected_for(msg: Any, role: str) -> tuple[Expect, str | None, str | None]:
    if isinstance(msg, RemoteProtocolError):
        return Expect.ERROR, msg.code, None
    if isinstance(msg, p.Heartbeat):
        return Expect.NOTHING, None, None
    if isinstance(msg, p.StatsRequest):
        return Expect.STATS, None, None
    if role == "gamer":
        if isinstance(msg, p.Submit):
            return Expect.TASK_ERROR, None, msg.task_id  # unknown kind, bad input, rate limit or no funds
        if isinstance(msg, p.Fetch):
            return Expect.UNKNOWN_TASK, p.E_UNKNOWN_TASK, None
        return Expect.ERROR, p.E_UNEXPECTED, None
    if isinstance(msg, (p.PeerResult, p.PeerError)):
        return Expect.ERROR, p.E_NOT_ASSIGNED, None
    return Expect.ERROR, p.E_UNEXPECTED, None


# Hypothesis strategies ------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), st.binary(max_size=30),
)
values = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                      max_leaves=12)
ids = st.one_of(st.text(alphabet=ID_ALPHABET, min_size=1, max_size=70),
                st.integers(0, 60).map(lambda n: f"{HONEST_PREFIX}{n}"), st.text(max_size=10))
valid_ids = st.one_of(st.text(alphabet=ID_ALPHABET, min_size=1, max_size=64),
                      st.integers(0, 60).map(lambda n: f"{HONEST_PREFIX}{n}"))


def _shaped() -> st.SearchStrategy[bytes]:
    def build(tag: str | None, fields: dict[str, Any], extra: dict[str, Any]) -> bytes:
        body = {**extra, **fields}
        if tag is not None:
            body["type"] = tag
        return msgspec.msgpack.encode(body)

    tag = st.one_of(st.sampled_from(ALL_TAGS), st.text(max_size=12), st.none())
    fields = st.dictionaries(st.sampled_from(FIELD_NAMES), st.one_of(values, ids), max_size=6)
    extra = st.dictionaries(st.text(max_size=8), values, max_size=2)
    return st.builds(build, tag, fields, extra)


def _valid() -> st.SearchStrategy[bytes]:
    small_input = st.sampled_from([{}, {"width": 4, "height": 4, "grid": b"\x00" * 16, "agents": []},
                                   {"npc": "guard", "prompt": "hi"}])
    messages = st.one_of(
        st.builds(p.Submit, valid_ids, st.sampled_from(KINDS[:-1]), st.one_of(values, small_input),
                  st.one_of(st.none(), st.integers(1, p.MAX_DEADLINE_MS))),
        st.builds(lambda tid, example, deadline: p.Submit(tid, example[0], example[1], deadline), valid_ids,
                  st.sampled_from(EXAMPLES), st.one_of(st.none(), st.integers(1, p.MAX_DEADLINE_MS))),
        st.builds(p.Fetch, valid_ids),
        st.builds(p.Heartbeat, st.integers(0, 1_000_000)),
        st.just(p.StatsRequest()),
        st.builds(p.Hello, role=st.sampled_from(["peer", "gamer", "x"]), protocol=st.integers(0, 3),
                  name=st.text(min_size=1, max_size=64), public_key=st.one_of(st.none(), st.binary(max_size=64)),
                  signature=st.one_of(st.none(), st.binary(max_size=128))),
        st.builds(p.PeerResult, valid_ids, values, st.floats(0, 3.6e6)),
        st.builds(p.PeerError, valid_ids, st.text(max_size=64), st.text(max_size=200)),
        # Server messages sent by a client
        st.builds(p.Ack, valid_ids), st.builds(p.Cancel, valid_ids),
        st.builds(p.Assign, valid_ids, st.sampled_from(KINDS[:-1]), values, st.integers(1, 1000)),
        st.builds(p.Welcome, valid_ids, st.just(1), st.just(1.0), st.just(1024)),
    )
    return messages.map(p.encode)


_MUTATIONS = ("flip", "insert", "delete", "truncate", "duplicate")


def mutate(frame: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    data = bytearray(frame)
    for op, at, blob in ops:
        i = at % (len(data) + 1)
        if op == "flip" and data:
            data[i % len(data)] ^= (blob[0] if blob else 0x5A) or 1
        elif op == "insert":
            data[i:i] = blob or b"\xc1"
        elif op == "delete":
            del data[i:i + 1 + len(blob)]
        elif op == "truncate":
            del data[i:]
        elif op == "duplicate":
            data[i:i] = data[i:i + 1 + len(blob)]
    return bytes(data)


def _mutated() -> st.SearchStrategy[bytes]:
    ops = st.lists(st.tuples(st.sampled_from(_MUTATIONS), st.integers(0, 10_000), st.binary(max_size=6)),
                   min_size=1, max_size=4)
    return st.builds(mutate, st.one_of(_valid(), _shaped()), ops)


def _oversized(max_bytes: int) -> st.SearchStrategy[bytes]:
    return st.builds(lambda n, pattern: (pattern * (n // len(pattern) + 1))[:n],
                     st.integers(max_bytes + 1, max_bytes + 2048), st.binary(min_size=1, max_size=8))


def _batches() -> st.SearchStrategy[bytes]:
    """Several messages in one frame (valid, shaped or mutated ones mixed): each is owed its own answer."""
    return st.lists(st.one_of(_valid(), _shaped(), _mutated()), min_size=0, max_size=5).map(
        lambda parts: b"\x90" if not parts else p.batch_frame(parts) if len(parts) > 1 else b"\x91" + parts[0])


def frames(max_bytes: int) -> st.SearchStrategy[Frame]:
    return st.one_of(_shaped(), _valid(), _mutated(), _batches(), _oversized(max_bytes), st.text(max_size=60))


def handshake_garbage(max_bytes: int) -> st.SearchStrategy[Frame]:
    """First frames of a connection that are anything but a signed hello."""
    return st.one_of(frames(max_bytes), st.builds(
        lambda role, protocol, key, sig: p.encode(p.Hello(role=role, protocol=protocol, name="fuzz", slots=1,
                                                          public_key=key, signature=sig)),
        st.sampled_from(["peer", "gamer"]), st.sampled_from([p.PROTOCOL_VERSION, 0, 99]),
        st.one_of(st.none(), st.binary(min_size=32, max_size=32), st.sampled_from(WEAK_KEYS)),
        st.one_of(st.none(), st.binary(min_size=64, max_size=64))))


# The same families from a seeded Random, for the long benchmark run ---------------------------------------


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 2 else 7)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64 - 1, rng.randrange(-1000, 1000)])
    if pick == 3:
        return rng.choice([0.0, -1.5, float("inf"), float("nan"), rng.uniform(-1e9, 1e9)])
    if pick == 4:
        return "".join(rng.choice(ID_ALPHABET + " \u00e9\u4e2d\x00") for _ in range(rng.randrange(0, 20)))
    if pick == 5:
        return rng.randbytes(rng.randrange(0, 20))
    if pick == 6:
        return f"{HONEST_PREFIX}{rng.randrange(60)}"
    if pick == 7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {str(_random_value(rng, 2)): _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _random_id(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return f"{HONEST_PREFIX}{rng.randrange(60)}"
    return "".join(rng.choice(ID_ALPHABET) for _ in range(rng.randrange(1, 40)))


def _random_valid(rng: random.Random) -> bytes:
    pick = rng.randrange(10)
    tid = _random_id(rng)
    if pick < 2:
        msg: msgspec.Struct = p.Submit(tid, rng.choice(KINDS[:-1]), _random_value(rng),
                                       rng.choice([None, 1, 200, p.MAX_DEADLINE_MS]))
    elif pick == 2:
        kind, example = rng.choice(EXAMPLES)
        msg = p.Submit(tid, kind, example, rng.choice([None, 1, 200, p.MAX_DEADLINE_MS]))
    elif pick == 3:
        msg = p.Fetch(tid)
    elif pick == 4:
        msg = p.Heartbeat(rng.randrange(100))
    elif pick == 5:
        msg = p.Hello(role=rng.choice(["peer", "gamer"]), protocol=1, name="again", public_key=rng.randbytes(32),
                      signature=rng.randbytes(64))
    elif pick == 6:
        msg = p.PeerResult(tid, _random_value(rng), rng.uniform(0, 1000))
    elif pick == 7:
        msg = p.PeerError(tid, "timeout", "slow")
    elif pick == 8:
        msg = p.Assign(tid, "physics", _random_value(rng), 100)
    else:
        msg = p.Ack(tid)
    return p.encode(msg)


def _random_shaped(rng: random.Random) -> bytes:
    body = {rng.choice(FIELD_NAMES): _random_value(rng) for _ in range(rng.randrange(0, 6))}
    if rng.random() < 0.9:
        body["type"] = rng.choice(ALL_TAGS) if rng.random() < 0.8 else _random_value(rng, 2)
    return msgspec.msgpack.encode(body)


def random_frame(rng: random.Random, max_bytes: int) -> Frame:
    pick = rng.random()
    if pick < 0.30:
        return _random_shaped(rng)
    if pick < 0.60:
        return _random_valid(rng)
    if pick < 0.93:
        base = _random_valid(rng) if rng.random() < 0.5 else _random_shaped(rng)
        ops = [(rng.choice(_MUTATIONS), rng.randrange(10_000), rng.randbytes(rng.randrange(0, 6)))
               for _ in range(rng.randrange(1, 4))]
        return mutate(base, ops)
    if pick < 0.935:
        return p.batch_frame([_random_valid(rng) for _ in range(rng.randrange(2, 6))])
    if pick < 0.94:
        n = max_bytes + 1 + rng.randrange(2048)
        return (rng.randbytes(4) * (n // 4 + 1))[:n]
    return "".join(rng.choice(ID_ALPHABET) for _ in range(rng.randrange(0, 40)))
