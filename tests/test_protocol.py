"""Message encoding and validation."""

from __future__ import annotations

import msgpack
import pytest

from runtime import protocol
from runtime.sampling import SamplingParams


def open_message(**changes):
    message = {
        "type": "open",
        "session": "s1",
        "prompt": protocol.pack_ids([1, 2, 3]),
        "max_tokens": 8,
        "mode": "dsd",
        "sampling": SamplingParams().to_dict(),
    }
    message.update(changes)
    return message


def test_round_trip_keeps_fields_and_arrays() -> None:
    decoded = protocol.decode(protocol.encode(open_message()))
    assert decoded["type"] == "open" and protocol.unpack_ids(decoded["prompt"]) == [1, 2, 3]
    probs = protocol.unpack_probs(protocol.pack_probs([0.25, 0.75]))
    assert probs.tolist() == [0.25, 0.75]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\xc1garbage", "bad_message"),
        (msgpack.packb([1, 2, 3]), "bad_message"),
        (msgpack.packb({"v": 99, "type": "open"}), "bad_version"),
        (msgpack.packb({"v": 1, "type": "launch"}), "unknown_type"),
        (protocol.encode(open_message(extra=1)), "bad_message"),
        (protocol.encode(open_message(max_tokens="8")), "bad_message"),
        (protocol.encode(open_message(max_tokens=True)), "bad_message"),
        (protocol.encode(open_message(mode="telepathy")), "bad_message"),
        (protocol.encode(open_message(prompt=b"\x01\x02\x03")), "bad_message"),
        (protocol.encode(open_message(prompt=b"")), "bad_message"),
        (protocol.encode(open_message(session="")), "bad_message"),
        (protocol.encode(open_message(sampling={"temperature": 1.0})), "bad_message"),
        (protocol.encode(open_message(prompt=b"\0" * 4 * 40000)), "too_large"),
        (b"\0" * (protocol.MAX_MESSAGE_BYTES + 1), "too_large"),
    ],
)
def test_bad_messages_are_rejected_with_a_code(frame: bytes, code: str) -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(frame)
    assert info.value.code == code


def test_verify_needs_q_ids_and_probs_together() -> None:
    message = {"type": "verify", "session": "s", "round": 0, "draft": protocol.pack_ids([1])}
    protocol.decode(protocol.encode(message))
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(protocol.encode({**message, "q_ids": protocol.pack_ids([1])}))


def test_expected_types_are_enforced() -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(protocol.encode({"type": "closed", "session": "s"}), expect=("open",))
    assert info.value.code == "unexpected_type"
