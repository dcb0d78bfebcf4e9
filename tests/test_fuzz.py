"""The target server survives malformed, truncated, oversized and out-of-order messages."""

from __future__ import annotations

from conftest import greedy_reference

from emulator.chaos.fuzz import fuzz, send_oversized
from runtime.draft import EdgeClient, EdgeSettings
from runtime.policies import Fixed

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
    assert client.run(prompt, 20).output_ids == greedy_reference(tiny_target, prompt, 20)
    client.close()
