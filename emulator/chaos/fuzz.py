"""Random and mutated protocol messages, thrown at a target server to show that nothing it
can be sent makes it crash, hang or answer with something malformed."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import msgpack
import zmq

from runtime import protocol
from runtime.rounds import Verdict
from runtime.sampling import SamplingParams

QUIET_S = 2.0
ODD_VALUES = (None, -1, 2**40, "x", b"\xff" * 7, [1], {"a": 1}, 1.5, True)


def valid_messages(session: str) -> list[dict]:
    """One well-formed message of every type in the protocol, with its optional fields: the
    three an edge sends (a greedy open, a sampling one asking for a window, a verify with a
    draft distribution and its timing), and the five a server sends, which a server must
    refuse as unexpected."""
    ids, probs = protocol.pack_ids([4, 5, 6, 7]), protocol.pack_probs([0.5, 0.5, 0.9, 0.1])
    sampling = SamplingParams(temperature=0.8, top_k=5, draft_top_k=2, seed=3)
    messages = [
        {
            "type": "open",
            "session": session,
            "prompt": protocol.pack_ids([1, 2, 3]),
            "max_tokens": 5,
            "mode": "dsd",
            "sampling": SamplingParams().to_dict(),
        },
        {
            "type": "open",
            "session": f"{session}-f",
            "prompt": protocol.pack_ids([1, 2]),
            "max_tokens": 4,
            "mode": "fused",
            "sampling": sampling.to_dict(),
            "gamma": 3,
        },
        {"type": "verify", "session": session, "round": 0, "draft": protocol.pack_ids([4, 5])},
        {
            "type": "verify",
            "session": session,
            "round": 1,
            "draft": protocol.pack_ids([4, 5]),
            "q_ids": ids,
            "q_probs": probs,
            "t_send": 1.0,
            "draft_ms": 3.5,
        },
        {"type": "close", "session": session},
        {
            "type": "opened",
            "session": session,
            "token": 1,
            "done": False,
            "prefill_ms": 1.0,
            "t_recv": 1.0,
            "t_send": 1.1,
        },
        Verdict(session, 0, 1, 2, False, 0.5, 2, 3.0, 1.0, 1.1, 3, 2, 4, 1, 0.5, 4).wire(),
        protocol.tokens_message(session, [7, 8], False, 2, 1, 2, 3.0, 1.2),
        {"type": "closed", "session": session},
        {"type": "error", "code": "bad_message", "message": "no", "session": session},
    ]
    return messages


def flip_bytes(rng: random.Random, data: bytes, most: int) -> bytes:
    """``data`` with between 1 and ``most`` - 1 bytes set to random values."""
    damaged = bytearray(data)
    for _ in range(rng.randrange(1, most)):
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    return bytes(damaged)


def mutate(rng: random.Random, message: dict) -> bytes:
    """A frame made from ``message``: random bytes, truncated, bit-flipped, a field set to an
    odd value or dropped, out of order, for an unknown session, or with bad token ids."""
    choice = rng.randrange(8)
    if choice == 0:
        return rng.randbytes(rng.randrange(0, 64))
    frame = protocol.encode(message)
    if choice == 1:
        return frame[: rng.randrange(len(frame))]
    if choice == 2:
        return flip_bytes(rng, frame, 4)
    body = dict(message)
    key = rng.choice(list(body))
    if choice == 3:
        body[key] = rng.choice(ODD_VALUES)
    elif choice == 4:
        body.pop(key)
    elif choice == 5:
        body["round"] = rng.randrange(-3, 50)
    elif choice == 6:
        body["session"] = f"ghost-{rng.randrange(100)}"
    else:
        body["draft"] = protocol.pack_ids([rng.randrange(-5, 10**6) for _ in range(3)])
    return msgpack.packb({"v": protocol.VERSION, **body}, use_bin_type=True)


@dataclass
class FuzzOutcome:
    sent: int = 0
    replies: int = 0
    malformed_replies: int = 0


def fuzz(endpoint: str, messages: int, seed: int, senders: int = 4) -> FuzzOutcome:
    """Send ``messages`` frames from several sockets (a tenth valid, a tenth with extra
    frames, the rest mutated) and read every reply; each reply must itself decode."""
    rng = random.Random(seed)
    context = zmq.Context.instance()
    sockets = []
    for _ in range(senders):
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sockets.append(sock)
    outcome = FuzzOutcome()

    def read(sock: zmq.Socket, wait_ms: int) -> bool:
        got = False
        while sock.poll(wait_ms):
            frame = sock.recv()
            outcome.replies += 1
            got = True
            try:
                protocol.decode(frame)
            except protocol.ProtocolError:
                outcome.malformed_replies += 1
            wait_ms = 0
        return got

    try:
        for index in range(messages):
            sock = sockets[index % senders]
            session = f"fz-{index % 17}"
            kind = rng.randrange(10)
            if kind == 0:
                sock.send_multipart([b"extra", b"frames"])
            elif kind == 1:
                sock.send(protocol.encode(rng.choice(valid_messages(session))))
            else:
                sock.send(mutate(rng, rng.choice(valid_messages(session))))
            outcome.sent += 1
            read(sock, 0)
        quiet_since = time.monotonic()  # the server is done when no reply comes for a while
        while time.monotonic() - quiet_since < QUIET_S:
            if any([read(sock, 100) for sock in sockets]):
                quiet_since = time.monotonic()
    finally:
        for sock in sockets:
            sock.close(0)
    return outcome


def send_oversized(endpoint: str) -> None:
    """One frame past the largest message: the server's socket drops this peer."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(endpoint)
    sock.send(b"\0" * (protocol.MAX_MESSAGE_BYTES + 10))
    sock.close()
