"""Greedy DSD over real ZeroMQ sockets is token-identical to the target's own greedy decode."""

from __future__ import annotations

import threading

import pytest
import torch

from runtime.draft import EdgeClient, EdgeSettings
from runtime.events import EventLog
from runtime.kvcache import Row, forward_one, forward_rows, new_cache
from runtime.policies import BatchingPolicy, Fixed
from runtime.reference import generate_greedy
from runtime.sampling import SamplingParams

TINY_TOKENS = 40
DEFAULT_TOKENS = 24


def run_concurrent(endpoint, draft, prompts, tokens, gammas, mode="dsd"):
    """One edge per γ, all at once; returns {(edge, prompt index): output ids}."""
    outputs, errors = {}, []

    def edge(index: int, gamma: int) -> None:
        client = EdgeClient(
            endpoint, draft, EdgeSettings(f"edge{index}", Fixed(gamma), timeout_s=120)
        )
        try:
            for number, prompt in enumerate(prompts):
                outputs[(index, number)] = client.request(prompt, tokens, mode).output_ids
        except Exception as exc:  # surfaced below with the edge's number
            errors.append((index, exc))
        finally:
            client.close()

    threads = [threading.Thread(target=edge, args=(i, g)) for i, g in enumerate(gammas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return outputs


@pytest.mark.parametrize("gamma", range(0, 9))
def test_tiny_pair_single_edge(tiny_target, tiny_draft, start_server, gamma) -> None:
    server = start_server(tiny_target)
    prompt = tiny_target.encode_prompt("lossless check")
    expected = generate_greedy(tiny_target, prompt, TINY_TOKENS)
    outputs = run_concurrent(server.endpoint, tiny_draft, [prompt], TINY_TOKENS, [gamma])
    assert outputs[(0, 0)] == expected


def test_tiny_pair_concurrent_edges_are_batched(tiny_target, tiny_draft, start_server) -> None:
    log = EventLog(None, "target", keep=True)
    server = start_server(
        tiny_target, batching=BatchingPolicy(max_batch=8, max_wait_ms=50.0), log=log
    )
    prompts = [tiny_target.encode_prompt(t) for t in ("short", "a longer prompt than that")]
    expected = [generate_greedy(tiny_target, p, TINY_TOKENS) for p in prompts]
    gammas = [1, 2, 3, 4, 5, 6, 7, 8]
    outputs = run_concurrent(server.endpoint, tiny_draft, prompts, TINY_TOKENS, gammas)
    for (edge, number), output in outputs.items():
        assert output == expected[number], f"edge {edge} (γ={gammas[edge]}) prompt {number}"
    assert server.counters["opened"] == len(gammas) * len(prompts)
    assert max(e["batch_size"] for e in log.events if e["event"] == "batch") > 1


@pytest.mark.parametrize("mode", ["cloud", "fused"])
def test_tiny_pair_cloud_and_fused_modes(tiny_target, tiny_draft, start_server, mode) -> None:
    server = start_server(tiny_target, draft=tiny_draft)
    prompt = tiny_target.encode_prompt("stream me")
    expected = generate_greedy(tiny_target, prompt, TINY_TOKENS)
    outputs = run_concurrent(server.endpoint, tiny_draft, [prompt], TINY_TOKENS, [3, 5], mode)
    assert outputs[(0, 0)] == expected and outputs[(1, 0)] == expected


def test_edge_only_is_the_drafts_own_greedy(tiny_draft) -> None:
    prompt = tiny_draft.encode_prompt("edge only")
    client = EdgeClient(None, tiny_draft)
    assert client.request(prompt, 20, "edge-only").output_ids == generate_greedy(
        tiny_draft, prompt, 20
    )


def test_stochastic_dsd_is_reproducible_for_a_seed(tiny_target, tiny_draft, start_server) -> None:
    server = start_server(tiny_target)
    prompt = tiny_target.encode_prompt("sample me")
    params = SamplingParams(temperature=0.8, top_p=0.95, draft_top_k=8, seed=3)
    runs = []
    for _ in range(2):
        client = EdgeClient(
            server.endpoint, tiny_draft, EdgeSettings(policy=Fixed(4), params=params)
        )
        runs.append(client.request(prompt, 30).output_ids)
        client.close()
    assert runs[0] == runs[1] and len(runs[0]) == 30


def test_batched_forward_equals_unbatched(tiny_target) -> None:
    """Left-padded batching reproduces each row's own logits and leaves each cache its own."""
    torch.manual_seed(0)
    prompts = [torch.randint(0, 300, (n,)).tolist() for n in (7, 12, 3)]
    news = [[1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11, 12]]
    model = tiny_target.model
    singles, caches = [], []
    for prompt, new in zip(prompts, news, strict=True):
        alone = new_cache()
        forward_one(model, alone, prompt, 1)
        singles.append(forward_one(model, alone, new, len(new)))
        batched = new_cache()
        forward_one(model, batched, prompt, 1)
        caches.append(batched)
    outs = forward_rows(model, [Row(c, n) for c, n in zip(caches, news, strict=True)])
    for single, out in zip(singles, outs, strict=True):
        assert torch.allclose(single, out, atol=1e-4)
        assert torch.equal(single.argmax(-1), out.argmax(-1))
    follow = forward_rows(model, [Row(c, [3]) for c in caches])
    for prompt, new, out in zip(prompts, news, follow, strict=True):
        fresh = new_cache()
        forward_one(model, fresh, prompt + new, 1)
        assert torch.allclose(forward_one(model, fresh, [3], 1), out, atol=1e-4)


@pytest.mark.model
@pytest.mark.parametrize("gamma", range(1, 9))
def test_default_pair_single_edge(default_pair, start_server, gamma) -> None:
    target, draft = default_pair
    server = start_server(target)
    prompt = target.encode_prompt("What is the capital of France?")
    expected = generate_greedy(target, prompt, DEFAULT_TOKENS)
    outputs = run_concurrent(server.endpoint, draft, [prompt], DEFAULT_TOKENS, [gamma])
    assert outputs[(0, 0)] == expected


@pytest.mark.model
def test_default_pair_concurrent_edges(default_pair, start_server) -> None:
    target, draft = default_pair
    log = EventLog(None, "target", keep=True)
    server = start_server(target, batching=BatchingPolicy(max_batch=4, max_wait_ms=100.0), log=log)
    prompts = [target.encode_prompt(t) for t in ("Why do cats purr?", "How do I boil an egg?")]
    expected = [generate_greedy(target, p, DEFAULT_TOKENS) for p in prompts]
    outputs = run_concurrent(server.endpoint, draft, prompts, DEFAULT_TOKENS, [2, 4, 6])
    for (edge, number), output in outputs.items():
        assert output == expected[number], f"edge {edge} prompt {number}"
    assert max(e["batch_size"] for e in log.events if e["event"] == "batch") > 1


def test_verdicts_describe_the_batch_and_the_servers_load(
    tiny_target, tiny_draft, start_server
) -> None:
    """What batch-aware policies learn from: each row's verdict says how wide the batch
    and its other rows were, what the batch accepted, and how busy the server has been."""
    server = start_server(tiny_target, batching=BatchingPolicy(max_batch=8, max_wait_ms=200.0))
    logs = {gamma: EventLog(None, f"edge-{gamma}", keep=True) for gamma in (2, 6)}

    def edge(gamma: int) -> None:
        settings = EdgeSettings(f"e{gamma}", Fixed(gamma), log=logs[gamma])
        client = EdgeClient(server.endpoint, tiny_draft, settings)
        try:
            client.request(tiny_target.encode_prompt(f"prompt {gamma}"), TINY_TOKENS)
        finally:
            client.close()

    threads = [threading.Thread(target=edge, args=(gamma,)) for gamma in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared = 0
    for gamma, log in logs.items():
        for r in (e for e in log.events if e["event"] == "round" and e["drafted"] == gamma):
            assert r["batch_width"] >= gamma + 1
            assert 0.0 < r["utilisation"] <= 1.0
            if r["batch_size"] == 1:
                assert r["peer_width"] == 0 and r["batch_accepted"] == r["accepted"]
            else:
                shared += 1
                # the other row drafts its γ, or fewer near the end of its token budget
                assert 1 <= r["peer_width"] <= (7 if gamma == 2 else 3)
                assert r["batch_width"] == max(gamma + 1, r["peer_width"])
                assert r["accepted"] <= r["batch_accepted"] <= 8
                assert r["batch_rejected"] <= 2
    assert shared > 4
