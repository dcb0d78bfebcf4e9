"""The target server survives malformed, truncated, oversized and out-of-order messages."""

from __future__ import annotations

import random

import msgpack
import zmq
from conftest import greedy_reference

from runtime import protocol
from runtime.draft import EdgeClient
from runtime.policies import Fixed
from runtime.verify import SamplingParams

FUZZ_MESSAGES = 3000


def valid_messages(session: str) -> list[dict]:
    return [
        {
            "type": "open",
            "session": session,
            "prompt": protocol.pack_ids([1, 2, 3]),
            "max_tokens": 5,
            "mode": "dsd",
            "sampling": SamplingParams().to_dict(),
        },
        {"type": "verify", "session": session, "round": 0, "draft": protocol.pack_ids([4, 5])},
        {"type": "close", "session": session},
    ]


def mutate(rng: random.Random, message: dict) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:
        return rng.randbytes(rng.randrange(0, 64))
    frame = protocol.encode(message)
    if choice == 1:
        return frame[: rng.randrange(len(frame))]
    if choice == 2:
        data = bytearray(frame)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    body = dict(message)
    key = rng.choice(list(body))
    if choice == 3:
        body[key] = rng.choice([None, -1, 2**40, "x", b"\xff" * 7, [1], {"a": 1}, 1.5, True])
    elif choice == 4:
        body.pop(key)
    elif choice == 5:
        body["round"] = rng.randrange(-3, 50)  # out of order
    elif choice == 6:
        body["session"] = f"ghost-{rng.randrange(100)}"  # unknown session
    else:
        body["draft"] = protocol.pack_ids([rng.randrange(-5, 10**6) for _ in range(3)])
    return msgpack.packb({"v": 1, **body}, use_bin_type=True)


def test_server_survives_fuzzing_and_keeps_serving(tiny_target, tiny_draft, start_server) -> None:
    server = start_server(tiny_target)
    rng = random.Random(1234)
    context = zmq.Context.instance()
    attacker = context.socket(zmq.DEALER)
    attacker.setsockopt(zmq.LINGER, 0)
    attacker.connect(server.endpoint)
    replies = 0
    for index in range(FUZZ_MESSAGES):
        session = f"fz-{index % 17}"
        kind = rng.randrange(10)
        if kind == 0:
            attacker.send_multipart([b"extra", b"frames"])
        elif kind == 1:
            attacker.send(protocol.encode(rng.choice(valid_messages(session))))
        else:
            attacker.send(mutate(rng, rng.choice(valid_messages(session))))
        while attacker.poll(0):
            protocol.decode(attacker.recv())  # every reply is itself well formed
            replies += 1
    oversized = context.socket(zmq.DEALER)
    oversized.setsockopt(zmq.LINGER, 0)
    oversized.connect(server.endpoint)
    oversized.send(b"\0" * (protocol.MAX_MESSAGE_BYTES + 10))  # the socket drops this peer
    while attacker.poll(2000):
        protocol.decode(attacker.recv())
        replies += 1
    assert server.counters["messages"] >= FUZZ_MESSAGES * 0.99
    assert replies > FUZZ_MESSAGES // 2
    errors = sum(v for k, v in server.counters.items() if k.startswith("error:"))
    assert errors > FUZZ_MESSAGES // 2

    prompt = tiny_target.encode_prompt("still alive?")
    client = EdgeClient(server.endpoint, tiny_draft, policy=Fixed(3))
    assert client.run(prompt, 20).output_ids == greedy_reference(tiny_target, prompt, 20)
    client.close()
    attacker.close(0)
    oversized.close(0)
