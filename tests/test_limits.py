"""The target server's limits: each one a setting, each answered with its own error, and a
client with many sessions cannot fill every batch (real sockets on loopback, tiny model)."""

from __future__ import annotations

import collections
from types import SimpleNamespace

import zmq

from runtime import protocol
from runtime.policies import BatchingPolicy
from runtime.sampling import SamplingParams
from runtime.target import PendingVerify, ServerLimits, TargetServer


def open_message(session: str, prompt_tokens: int = 3, max_tokens: int = 5) -> dict:
    return {
        "type": "open",
        "session": session,
        "prompt": protocol.pack_ids([1] * prompt_tokens),
        "max_tokens": max_tokens,
        "mode": "dsd",
        "sampling": SamplingParams().to_dict(),
    }


class RawClient:
    """A DEALER socket speaking the protocol by hand."""

    def __init__(self, endpoint: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def ask(self, payload: dict | bytes) -> dict:
        self.socket.send(payload if isinstance(payload, bytes) else protocol.encode(payload))
        assert self.socket.poll(10_000), "no reply"
        return protocol.decode(self.socket.recv())

    def close(self) -> None:
        self.socket.close(0)


def test_sessions_are_limited_in_all_and_per_client(tiny_target, start_server) -> None:
    limits = ServerLimits(max_sessions=3, max_sessions_per_client=2)
    server = start_server(tiny_target, limits=limits)
    a, b, c = (RawClient(server.endpoint) for _ in range(3))
    assert a.ask(open_message("a1"))["type"] == "opened"
    assert a.ask(open_message("a2"))["type"] == "opened"
    refused = a.ask(open_message("a3"))
    assert refused["code"] == "client_session_limit" and "2" in refused["message"]
    assert b.ask(open_message("b1"))["type"] == "opened"  # another client still gets in
    full = c.ask(open_message("c1"))
    assert full["code"] == "too_many_sessions"
    assert a.ask({"type": "close", "session": "a1"})["type"] == "closed"
    assert c.ask(open_message("c1"))["type"] == "opened"  # a freed place is taken
    for client in (a, b, c):
        client.close()


def test_context_and_message_size_are_settings(tiny_target, start_server) -> None:
    server = start_server(tiny_target, limits=ServerLimits(max_context=40, max_message_bytes=600))
    client = RawClient(server.endpoint)
    too_long = client.ask(open_message("s", prompt_tokens=30, max_tokens=20))
    assert too_long["code"] == "context_limit" and "40" in too_long["message"]
    big = client.ask(open_message("s", prompt_tokens=200, max_tokens=1))
    assert big["code"] == "message_too_large" and "600" in big["message"]
    assert client.ask(open_message("s", prompt_tokens=30, max_tokens=10))["type"] == "opened"
    client.close()


def test_a_batch_takes_verifies_in_turns_across_clients(tiny_target) -> None:
    server = TargetServer(tiny_target, "tcp://127.0.0.1:*", BatchingPolicy(max_batch=4))

    def queued(client: bytes, index: int) -> PendingVerify:
        return PendingVerify(SimpleNamespace(identity=client), index, None, 0.0, float(index))

    greedy = [queued(b"greedy", i) for i in range(6)]
    polite = queued(b"polite", 6)
    server.pending = collections.deque([*greedy, polite])
    batch = server._fair_batch()
    assert batch == [greedy[0], polite, greedy[1], greedy[2]]  # FIFO would leave polite out
    assert list(server.pending) == greedy[3:]  # the rest wait, oldest first
    server.socket.close(0)
