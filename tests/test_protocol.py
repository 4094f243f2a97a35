import msgspec
import pytest

from p2c2r import protocol as p
from p2c2r.errors import RemoteProtocolError


def test_every_message_round_trips():
    messages = [
        p.Hello(role="peer", protocol=1, name="n", slots=2, kinds=["physics"]),
        p.Hello(role="peer", protocol=1, name="n", slots=1, kinds=["ai_npc_dialogue"],
                features=["ai_npc_dialogue:model=llm-small-v1"]),
        p.Welcome("peer_1", 1, 1.0, 100),
        p.Submit("t1", "physics", {"a": [1, 2.5, b"x"]}, deadline_ms=200),
        p.Ack("t1"),
        p.Result("t1", "physics", {"x": 1}, "peer", 3.5, 10),
        p.Assign("a1", "physics", msgspec.Raw(msgspec.msgpack.encode({"x": 1})), 100),
        p.Cancel("a1"),
        p.PeerResult("a1", {"y": 2}, 1.5),
        p.PeerError("a1", "timeout", "slow"),
        p.Earned("a1", 9, 90),
        p.Error("bad_message", "nope", task_id="t1"),
        p.Heartbeat(running=1),
        p.Fetch("t1"),
        p.StatsRequest(),
    ]
    for msg in messages:
        frame = p.encode(msg)
        decode = p.decode_from_server if isinstance(msg, p.ServerMessage.__args__) else p.decode_from_client
        assert decode(frame) == msg


def test_raw_payloads_are_embedded_verbatim():
    inner = msgspec.msgpack.encode({"k": [1, 2, 3]})
    frame = p.encode(p.PeerResult("a1", msgspec.Raw(inner), 1.0))
    assert p.decode_from_client(frame).output == {"k": [1, 2, 3]}


@pytest.mark.parametrize(
    "frame, needle",
    [
        (b"\xc1", "malformed"),
        (b"\x81\xa4type\xa2\xff\xfe", "malformed"),  # a string that is not UTF-8
        (msgspec.msgpack.encode({"type": "nope"}), "type"),
        (msgspec.msgpack.encode({"type": "submit", "task_id": "t", "kind": "k"}), "input"),
        (msgspec.msgpack.encode({"type": "submit", "task_id": "bad id!", "kind": "k", "input": 1}), "task_id"),
        (msgspec.msgpack.encode({"type": "submit", "task_id": "t", "kind": "k", "input": 1, "deadline_ms": -5}), "deadline_ms"),
        (msgspec.msgpack.encode({"type": "submit", "task_id": "t", "kind": "k", "input": 1, "extra": 1}), "extra"),
        (msgspec.msgpack.encode([1, 2, 3]), "Expected"),
        # A feature must be qualified by its kind ("kind:feature") and spelled from a small alphabet.
        (msgspec.msgpack.encode({"type": "hello", "role": "peer", "protocol": 1, "name": "n",
                                 "features": ["model=big"]}), "features[0]"),
        (msgspec.msgpack.encode({"type": "hello", "role": "peer", "protocol": 1, "name": "n",
                                 "features": ["ai_npc_dialogue:model big"]}), "features[0]"),
    ],
)
def test_bad_frames_raise_a_remote_error_that_names_the_problem(frame, needle):
    with pytest.raises(RemoteProtocolError) as info:
        p.decode_from_client(frame)
    assert needle in str(info.value)


def test_oversized_and_text_frames_are_refused():
    with pytest.raises(RemoteProtocolError) as info:
        p.decode_from_client(b"\x00" * 101, max_bytes=100)
    assert info.value.code == p.E_TOO_LARGE and "101 bytes" in str(info.value)
    with pytest.raises(RemoteProtocolError, match="text frames"):
        p.decode_from_client('{"type": "hello"}')


def test_server_messages_are_not_accepted_from_clients():
    with pytest.raises(RemoteProtocolError):
        p.decode_from_client(p.encode(p.Assign("a1", "physics", {}, 10)))


def test_canonical_bytes_ignore_key_order():
    assert p.canonical_bytes({"b": 1, "a": 2}) == p.canonical_bytes({"a": 2, "b": 1})


# Batch frames ------------------------------------------------------------------------------------------


def test_a_batch_frame_carries_messages_in_order_and_one_message_stays_a_plain_frame():
    messages = [p.Fetch(f"t{i}") for i in range(40)]  # 40 > 15: the 16-bit array header
    frame = p.batch_frame([p.encode(m) for m in messages])
    assert p.decode_client_frame(frame) == messages
    assert p.batch_frame([p.encode(messages[0])]) == p.encode(messages[0])
    assert p.decode_client_frame(p.encode(messages[0])) == [messages[0]]
    small = p.batch_frame([p.encode(m) for m in messages[:3]])
    assert small[0] == 0x93 and p.decode_client_frame(small) == messages[:3]


def test_a_bad_message_in_a_batch_gets_its_own_error_and_the_others_still_count():
    parts = [p.encode(p.Fetch("a")), msgspec.msgpack.encode({"type": "fetch"}), msgspec.msgpack.encode(7),
             p.encode(p.Heartbeat(2))]
    decoded = p.decode_client_frame(p.batch_frame(parts))
    assert decoded[0] == p.Fetch("a") and decoded[3] == p.Heartbeat(2)
    assert isinstance(decoded[1], RemoteProtocolError) and "message 1 of the batch" in str(decoded[1])
    assert "task_id" in str(decoded[1]) and decoded[1].code == p.E_BAD_MESSAGE
    assert isinstance(decoded[2], RemoteProtocolError) and "message 2" in str(decoded[2])


def test_whole_frame_problems_are_one_error():
    too_many = msgspec.msgpack.encode([{"type": "heartbeat"}] * (p.MAX_BATCH_MESSAGES + 1))
    [error] = p.decode_client_frame(too_many)
    assert isinstance(error, RemoteProtocolError) and str(p.MAX_BATCH_MESSAGES) in str(error)
    [error] = p.decode_client_frame(p.batch_frame([p.encode(p.Fetch("x"))] * 3), max_bytes=10)
    assert isinstance(error, RemoteProtocolError) and error.code == p.E_TOO_LARGE
    [error] = p.decode_client_frame("text")
    assert isinstance(error, RemoteProtocolError) and "text frames" in str(error)
    [error] = p.decode_client_frame(b"\x93\xc1\xc1\xc1")
    assert isinstance(error, RemoteProtocolError) and "malformed" in str(error)
    assert p.decode_client_frame(b"\x90") == []
    with pytest.raises(ValueError):
        p.batch_frame([])


def test_server_frames_decode_the_same_way():
    messages = [p.Ack("t1"), p.Result("t1", "physics", {"x": 1}, "peer", 1.0, 3), p.Earned("a", 1, 2)]
    assert p.decode_server_frame(p.batch_frame([p.encode(m) for m in messages])) == messages
