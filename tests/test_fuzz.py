"""The target server survives malformed, truncated, oversized and out-of-order messages."""

from __future__ import annotations

import random

from emulator.chaos.fuzz import fuzz, mutate, send_oversized, valid_messages
from runtime import protocol
from runtime.draft import EdgeClient, EdgeSettings
from runtime.policies import Fixed
from runtime.reference import generate_greedy

FUZZ_MESSAGES = 3000


def test_server_survives_fuzzing_and_keeps_serving(tiny_target, tiny_draft, start_server) -> None:
    server = start_server(tiny_target)
    outcome = fuzz(server.endpoint, FUZZ_MESSAGES, seed=1234)
    send_oversized(server.endpoint)
    assert outcome.sent == FUZZ_MESSAGES
    assert outcome.malformed_replies == 0  # every reply is itself well formed
    assert server.counters["messages"] >= FUZZ_MESSAGES * 0.99
    assert outcome.replies > FUZZ_MESSAGES // 2
    errors = sum(v for k, v in server.counters.items() if k.startswith("error:"))
    assert errors > FUZZ_MESSAGES // 2

    prompt = tiny_target.encode_prompt("still alive?")
    client = EdgeClient(server.endpoint, tiny_draft, EdgeSettings(policy=Fixed(3)))
    assert client.request(prompt, 20).output_ids == generate_greedy(tiny_target, prompt, 20)
    client.close()


def test_the_fuzzer_starts_from_every_message_type_well_formed() -> None:
    """A type the protocol gains is fuzzed too, or this fails; each starting point is valid,
    so that its mutations are near misses rather than noise."""
    messages = valid_messages("s")
    assert {m["type"] for m in messages} == set(protocol.SCHEMAS)
    for message in messages:
        assert protocol.decode(protocol.encode(message))["type"] == message["type"]


def test_decoding_a_mutated_message_of_any_type_is_a_protocol_error_or_a_message() -> None:
    rng = random.Random(7)
    refused = 0
    for message in valid_messages("s"):
        for _ in range(400):
            try:
                protocol.decode(mutate(rng, message))
            except protocol.ProtocolError:
                refused += 1
    assert refused > 0.6 * 400 * len(valid_messages("s"))
