"""The wire protocol: typed messages, encode/decode, limits, version, error and close codes. No I/O.

Every frame is one binary WebSocket message holding one MessagePack map with a ``type`` tag, or a batch:
a MessagePack array of up to ``MAX_BATCH_MESSAGES`` such maps, handled exactly as if they had arrived one
by one. Batches exist for throughput: under load, messages queued in one turn of the event loop share one
frame (``p2c2r.outbox``). Clients may always send batches; the coordinator sends them only to a client whose
``Hello`` set ``batch``. A connection opens with ``Hello`` (client, never in a batch), signed over the nonce
the coordinator sent in the upgrade response (``p2c2r.identity``), and ``Welcome`` or ``Error`` + close
(coordinator). Afterwards:

    gamer -> coordinator   Submit, Fetch, StatsRequest, Heartbeat
    coordinator -> gamer   Ack, Result, Error, Stats
    coordinator -> peer    Assign, Cancel, Earned, Error
    peer -> coordinator    PeerResult, PeerError, Heartbeat

Decoding validates shapes and limits (msgspec ``Meta`` constraints next to each field); a bad message is a
``RemoteProtocolError`` whose message names the problem (raised by ``decode_from_*``; put in the bad
message's place by ``decode_*_frame``, so a batch's other messages still count), so the receiver can answer
with an ``Error`` and keep serving. Task inputs and outputs travel as opaque MessagePack values; their schema belongs to the
task kind (``p2c2r.tasks``), which validates them separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import Meta

from p2c2r.errors import RemoteProtocolError
from p2c2r.network_config import MAX_DEADLINE_MS, MAX_MESSAGE_BYTES

PROTOCOL_VERSION = 1
MAX_BATCH_MESSAGES = 1024

# Close codes (4000-4999 are free for applications, RFC 6455 section 7.4.2).
CLOSE_UNSUPPORTED_VERSION = 4001
CLOSE_UNKNOWN_ROLE = 4002
CLOSE_BAD_HANDSHAKE = 4003
CLOSE_HANDSHAKE_TIMEOUT = 4004
CLOSE_AUTH_FAILED = 4005
CLOSE_BANNED = 4006
CLOSE_TOO_MANY_CONNECTIONS = 4007
CLOSE_IDLE = 4008
# Another connection signed in with the same key (two processes share one key file): not retried.
CLOSE_REPLACED = 4009
# The client stopped reading while messages for it piled up past the coordinator's backlog limit.
CLOSE_BACKLOG = 4010
CLOSE_SHUTTING_DOWN = 1001

# Error codes carried in Error.code
E_BAD_MESSAGE = "bad_message"
E_TOO_LARGE = "too_large"
E_UNEXPECTED = "unexpected_message"
E_UNKNOWN_KIND = "unknown_kind"
E_BAD_INPUT = "bad_input"
E_UNKNOWN_TASK = "unknown_task"
E_DUPLICATE_TASK = "duplicate_task"
E_RESULT_EXPIRED = "result_expired"
E_COMPUTE_FAILED = "compute_failed"
E_NO_CAPACITY = "no_capacity"
E_DEADLINE = "deadline_exceeded"
E_TIMEOUT = "timeout"
E_WORKER_CRASHED = "worker_crashed"
E_OVERLOADED = "overloaded"
E_RATE_LIMITED = "rate_limited"
E_INSUFFICIENT_FUNDS = "insufficient_funds"
E_NOT_ASSIGNED = "not_assigned"
E_TOO_MANY_IN_FLIGHT = "too_many_in_flight"
E_AUTH_FAILED = "auth_failed"
E_INTERNAL = "internal"

Name = Annotated[str, Meta(min_length=1, max_length=64)]
Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
KindName = Annotated[str, Meta(min_length=1, max_length=64)]
# What a peer can run beyond a kind's defaults, as "kind:feature" (e.g. "ai_npc_dialogue:model=llm-small-v1");
# see ``p2c2r.tasks.base`` (``features``, ``requirements``).
FeatureName = Annotated[str, Meta(min_length=3, max_length=128, pattern=r"^[a-z][a-z0-9_]*:[A-Za-z0-9_.:=+-]+$")]
DeadlineMs = Annotated[int, Meta(ge=1, le=MAX_DEADLINE_MS)]
Message = Annotated[str, Meta(max_length=2048)]
Role = Literal["peer", "gamer"]
Source = Literal["peer", "cache", "cloud"]


class _Msg(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    pass


# Handshake --------------------------------------------------------------------------------------------


class Hello(_Msg, tag="hello"):
    role: str  # validated against Role by the handshake so that the close code can say "unknown role"
    protocol: int
    name: Name
    # Ignored by the coordinator: a client's id is derived from its public key (p2c2r.identity), never claimed.
    resume_id: Id | None = None
    # Peer capabilities
    slots: Annotated[int, Meta(ge=0, le=256)] = 0
    kinds: Annotated[list[KindName], Meta(max_length=64)] = []
    # Optional extras of those kinds that this peer has installed (a larger local model, say); a task that
    # requires one goes only to peers that list it.
    features: Annotated[list[FeatureName], Meta(max_length=64)] = []
    device: Literal["cpu", "gpu"] = "cpu"
    # The client understands batch frames from the coordinator (see the module docstring).
    batch: bool = False
    # Identity proof (key-based identities): public key and signature of the challenge, both raw bytes.
    public_key: Annotated[bytes, Meta(max_length=64)] | None = None
    signature: Annotated[bytes, Meta(max_length=128)] | None = None


class Welcome(_Msg, tag="welcome"):
    client_id: Id
    protocol: int
    heartbeat_interval_s: float
    max_message_bytes: int
    server: str = "p2c2r"


# Gamer <-> coordinator ------------------------------------------------------------------------------


class Submit(_Msg, tag="submit"):
    # Chosen by the gamer and unique among its own tasks: resubmitting the same id is idempotent.
    task_id: Id
    kind: KindName
    input: Any
    deadline_ms: DeadlineMs | None = None


class Ack(_Msg, tag="ack"):
    task_id: Id
    # Still waiting for a result, or already answered (then a Result follows at once).
    state: str = "queued"


class Result(_Msg, tag="result"):
    task_id: Id
    kind: KindName
    output: Any
    source: Source
    latency_ms: float
    cost_micro_usd: int


class Fetch(_Msg, tag="fetch"):
    task_id: Id


class StatsRequest(_Msg, tag="stats_request"):
    pass


class Stats(_Msg, tag="stats"):
    body: dict[str, Any]


class Heartbeat(_Msg, tag="heartbeat"):
    running: Annotated[int, Meta(ge=0, le=1_000_000)] = 0


class Error(_Msg, tag="error"):
    code: Annotated[str, Meta(max_length=64)]
    message: Message
    task_id: Id | None = None


# Coordinator <-> peer -------------------------------------------------------------------------------


class Assign(_Msg, tag="assign"):
    # The attempt id is all the peer learns about the task: no gamer id, name or session.
    attempt_id: Id
    kind: KindName
    # Left encoded: the peer hands it to a worker, which validates it against the kind's schema.
    input: msgspec.Raw
    deadline_ms: DeadlineMs


class Cancel(_Msg, tag="cancel"):
    attempt_id: Id


class PeerResult(_Msg, tag="peer_result"):
    attempt_id: Id
    output: Any
    compute_ms: Annotated[float, Meta(ge=0.0, le=3.6e6)]


class PeerError(_Msg, tag="peer_error"):
    attempt_id: Id
    code: Annotated[str, Meta(max_length=64)]
    message: Message


class Earned(_Msg, tag="earned"):
    attempt_id: Id
    micro_usd: int
    total_micro_usd: int


ClientMessage = Union[Hello, Submit, Fetch, StatsRequest, Heartbeat, PeerResult, PeerError]
ServerMessage = Union[Welcome, Ack, Result, Error, Stats, Assign, Cancel, Earned]

_encoder = msgspec.msgpack.Encoder()
_Batch = Annotated[list[msgspec.Raw], Meta(max_length=MAX_BATCH_MESSAGES)]
_client_decoder = msgspec.msgpack.Decoder(ClientMessage)
_server_decoder = msgspec.msgpack.Decoder(ServerMessage)
_client_frame_decoder = msgspec.msgpack.Decoder(
    Union[ClientMessage, Annotated[list[ClientMessage], Meta(max_length=MAX_BATCH_MESSAGES)]]
)
_server_frame_decoder = msgspec.msgpack.Decoder(
    Union[ServerMessage, Annotated[list[ServerMessage], Meta(max_length=MAX_BATCH_MESSAGES)]]
)
_batch_decoder = msgspec.msgpack.Decoder(Union[_Batch, dict[str, Any]])


def encode(message: _Msg) -> bytes:
    return _encoder.encode(message)


def batch_frame(encoded: Sequence[bytes]) -> bytes:
    """One frame carrying already-encoded messages: the message itself when there is one, else a
    MessagePack array of them (its header written here, so nothing is encoded twice)."""
    count = len(encoded)
    if count == 1:
        return encoded[0]
    if not 1 < count <= MAX_BATCH_MESSAGES:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_MESSAGES} messages, not {count}")
    header = bytes((0x90 | count,)) if count < 16 else b"\xdc" + count.to_bytes(2, "big")
    return header + b"".join(encoded)


def decode_from_client(frame: bytes | str, *, max_bytes: int | None = MAX_MESSAGE_BYTES) -> ClientMessage:
    return _decode(_client_decoder, frame, max_bytes)


def decode_from_server(frame: bytes | str, *, max_bytes: int | None = MAX_MESSAGE_BYTES) -> ServerMessage:
    return _decode(_server_decoder, frame, max_bytes)


def decode_client_frame(
    frame: bytes | str, *, max_bytes: int | None = MAX_MESSAGE_BYTES
) -> list[ClientMessage | RemoteProtocolError]:
    """The messages of a frame (one, or a batch), in order. A bad message becomes a ``RemoteProtocolError``
    in its place, so the others of its batch still count."""
    return _decode_frame(_client_frame_decoder, _client_decoder, frame, max_bytes)


def decode_server_frame(
    frame: bytes | str, *, max_bytes: int | None = MAX_MESSAGE_BYTES
) -> list[ServerMessage | RemoteProtocolError]:
    return _decode_frame(_server_frame_decoder, _server_decoder, frame, max_bytes)


def _decode_frame(
    frame_decoder: msgspec.msgpack.Decoder, one_decoder: msgspec.msgpack.Decoder, frame: bytes | str,
    max_bytes: int | None,
) -> list[Any]:
    try:
        decoded = _decode(frame_decoder, frame, max_bytes)
    except RemoteProtocolError as exc:
        if exc.code != E_BAD_MESSAGE or isinstance(frame, str):  # too large, or text: nothing to salvage
            return [exc]
        # Something in it is bad. If it is a batch, find which messages and keep the rest.
        try:
            parts = _batch_decoder.decode(frame)  # type: ignore[arg-type]
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            return [exc]
        if not isinstance(parts, list):
            return [exc]
        out: list[Any] = []
        for index, part in enumerate(parts):
            try:
                out.append(_decode(one_decoder, part, None))
            except RemoteProtocolError as bad:
                out.append(RemoteProtocolError(f"message {index} of the batch: {bad}", code=bad.code))
        return out
    return decoded if isinstance(decoded, list) else [decoded]


def _decode(decoder: msgspec.msgpack.Decoder, frame: Any, max_bytes: int | None) -> Any:
    if isinstance(frame, str):
        raise RemoteProtocolError("text frames are not part of the protocol: send MessagePack in binary frames")
    if max_bytes is not None and len(frame) > max_bytes:
        raise RemoteProtocolError(
            f"message of {len(frame)} bytes exceeds the limit of {max_bytes} bytes", code=E_TOO_LARGE
        )
    try:
        return decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise RemoteProtocolError(f"invalid message: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec lets bad UTF-8 through as the latter
        raise RemoteProtocolError(f"malformed MessagePack: {exc}") from exc


def canonical_bytes(value: Any) -> bytes:
    """Deterministic MessagePack of a value (maps sorted by key): the basis of cache keys."""
    return msgspec.msgpack.encode(value, order="sorted")
