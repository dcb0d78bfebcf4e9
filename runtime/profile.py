"""Microbenchmarks of a model pair: what the simulator's compute and acceptance models read.

A profile holds, measured on this machine with the thread and CPU settings recorded in it:
draft step time vs context; target prefill time vs prompt length; target verify time over
batch size x tokens per row x context; per-position acceptance (the probability that draft
token i is accepted given tokens 0..i-1 were) on a prompt set; and message sizes as the
protocol encodes them. The simulator is calibrated from these alone, never from the
end-to-end runs it is compared with.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from runtime import protocol
from runtime.drafting import DraftState
from runtime.kvcache import Row, crop_to, forward_one, forward_rows, new_cache
from runtime.models import LoadedModel
from runtime.profile_store import PROFILE_VERSION
from runtime.verify import SamplingParams, greedy_verify


def _timed(step: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``step`` in ms (one untimed warm-up first)."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _filled_cache(model: LoadedModel, length: int, seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.vocab_size, (length,), generator=generator).tolist()
    cache = new_cache()
    forward_one(model.model, cache, ids, 1)
    return cache


def draft_step_ms(draft: LoadedModel, contexts: Iterable[int], repeats: int) -> list[dict]:
    """One-token draft forward time at each context length."""
    out = []
    for context in contexts:
        cache = _filled_cache(draft, context, context)

        def step(cache: Any = cache, context: int = context) -> None:
            forward_one(draft.model, cache, [1], 1)
            crop_to(cache, context)

        out.append({"context": context, "ms": _timed(step, repeats)})
    return out


def prefill_ms(model: LoadedModel, lengths: Iterable[int], repeats: int) -> list[dict]:
    """Prefill time (a fresh cache, the whole prompt in one forward) for each prompt length."""
    out = []
    for length in lengths:
        ids = list(range(1, length + 1))
        ms = _timed(lambda ids=ids: forward_one(model.model, new_cache(), ids, 1), repeats)
        out.append({"prompt_tokens": length, "ms": ms})
    return out


def prompt_lengths(model: LoadedModel, texts: list[str]) -> dict[str, Any]:
    """How prompt text becomes tokens (chat template included), so that the simulator can size
    any prompt file's prompts without a tokenizer: tokens ~= template + characters / ratio."""
    template = len(model.encode_prompt(""))
    measured = {text: len(model.encode_prompt(text)) for text in texts}
    chars = sum(len(text) for text in measured)
    content_tokens = max(1, sum(measured.values()) - template * len(measured))
    return {
        "template_tokens": template,
        "chars_per_token": chars / content_tokens,
        "measured": measured,
    }


def verify_ms(
    target: LoadedModel,
    batches: Iterable[int],
    tokens: Iterable[int],
    contexts: Iterable[int],
    repeats: int,
) -> list[dict[str, float]]:
    """Batched verification time over the grid (every row: ``tokens`` new tokens)."""
    grid = []
    for context in contexts:
        for batch in batches:
            caches = [_filled_cache(target, context, context * 31 + row) for row in range(batch)]
            for count in tokens:

                def step(caches: list = caches, count: int = count, context: int = context) -> None:
                    forward_rows(target.model, [Row(c, [1] * count) for c in caches])
                    for cache in caches:
                        crop_to(cache, context)

                grid.append(
                    {
                        "batch": batch,
                        "tokens": count,
                        "context": context,
                        "ms": _timed(step, repeats),
                    }
                )
    return grid


def acceptance(
    target: LoadedModel,
    draft: LoadedModel,
    prompts: list[list[int]],
    gamma: int,
    tokens: int,
) -> dict[str, Any]:
    """Greedy per-position acceptance: a[i] = P(draft token i accepted | 0..i-1 accepted)."""
    reached = [0] * gamma
    accepted_at = [0] * gamma
    drafted = accepted_total = 0
    per_prompt = []
    for prompt in prompts:
        prompt_reached, prompt_accepted = [0] * gamma, [0] * gamma
        committed = list(prompt)
        target_cache = new_cache()
        logits = forward_one(target.model, target_cache, committed, 1)
        committed.append(int(logits[-1].argmax()))
        drafter = DraftState(draft, SamplingParams(), seed=0)
        drafter.prefill(prompt)
        while len(committed) - len(prompt) < tokens:
            proposal = drafter.propose(committed, gamma)
            verify = forward_one(
                target.model, target_cache, [committed[-1], *proposal.tokens], gamma + 1
            )
            count, token = greedy_verify(proposal.tokens, verify)
            for position in range(min(count + 1, gamma)):
                reached[position] += 1
                accepted_at[position] += position < count
                prompt_reached[position] += 1
                prompt_accepted[position] += position < count
            drafted += gamma
            accepted_total += count
            crop_to(target_cache, len(committed) + count)
            committed.extend([*proposal.tokens[:count], token])
            drafter.accept(count)
        per_prompt.append({"reached": prompt_reached, "accepted": prompt_accepted})
    per_position = [a / r if r else None for a, r in zip(accepted_at, reached, strict=True)]
    return {
        "gamma": gamma,
        "per_position": per_position,
        "overall": accepted_total / drafted if drafted else None,
        "rounds": reached[0] if reached else 0,
        "drafted": drafted,
        "per_prompt": per_prompt,  # counts per position, in the order of ``prompts``
    }


def message_sizes(gammas: Iterable[int], draft_top_k: int) -> dict[str, Any]:
    """Bytes of each message as encoded, for the simulator's link model: ``open`` as
    [prompt tokens, bytes] pairs, ``verify_*`` as [γ, bytes] pairs, ``verdict`` in bytes."""
    sampling = SamplingParams(temperature=1.0, draft_top_k=draft_top_k).to_dict()
    sizes: dict[str, Any] = {"open": [], "verify_greedy": [], "verify_sampled": []}
    for prompt_len in (16, 64, 256):
        sizes["open"].append(
            [
                prompt_len,
                len(
                    protocol.encode(
                        {
                            "type": "open",
                            "session": "edge0-12345-0",
                            "prompt": protocol.pack_ids([1] * prompt_len),
                            "max_tokens": 128,
                            "mode": "dsd",
                            "sampling": sampling,
                            "gamma": 4,
                        }
                    )
                ),
            ]
        )
    for gamma in gammas:
        base = {
            "type": "verify",
            "session": "edge0-12345-0",
            "round": 100,
            "draft": protocol.pack_ids([1] * gamma),
            "t_send": time.time(),
        }
        sizes["verify_greedy"].append([gamma, len(protocol.encode(base))])
        sizes["verify_sampled"].append(
            [
                gamma,
                len(
                    protocol.encode(
                        {
                            **base,
                            "q_ids": protocol.pack_ids([1] * gamma * draft_top_k),
                            "q_probs": protocol.pack_probs([0.5] * gamma * draft_top_k),
                        }
                    )
                ),
            ]
        )
    session = "edge0-12345-0"
    sizes["opened"] = len(
        protocol.encode(
            {
                "type": "opened",
                "session": session,
                "token": 1234,
                "done": False,
                "prefill_ms": 199.2,
                "t_recv": time.time(),
                "t_send": time.time(),
            }
        )
    )
    sizes["close"] = len(protocol.encode({"type": "close", "session": session}))
    sizes["closed"] = len(protocol.encode({"type": "closed", "session": session}))
    sizes["verdict"] = len(
        protocol.encode(
            {
                "type": "verdict",
                "session": "edge0-12345-0",
                "round": 100,
                "accepted": 3,
                "token": 1234,
                "done": False,
                "queue_ms": 1.5,
                "batch_size": 4,
                "verify_ms": 180.2,
                "t_recv": time.time(),
                "t_send": time.time(),
            }
        )
    )
    return sizes


def profile_pair(
    target: LoadedModel,
    draft: LoadedModel,
    texts: list[str],
    grid: dict[str, list[int]],
    gamma: int = 8,
    tokens: int = 64,
    repeats: int = 5,
    conditions: dict[str, Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure everything a profile holds on the prompt ``texts``; ``grid`` names the sizes."""
    prompts = [target.encode_prompt(text) for text in texts]
    progress("draft step and prefill time")
    draft_steps = draft_step_ms(draft, grid["contexts"], repeats)
    draft_prefills = prefill_ms(draft, grid["prompt_lengths"], repeats)
    progress("target prefill time")
    prefills = prefill_ms(target, grid["prompt_lengths"], repeats)
    progress("target verify time grid")
    verifies = verify_ms(target, grid["batches"], grid["tokens"], grid["contexts"], repeats)
    progress("acceptance")
    accepted = acceptance(target, draft, prompts, gamma, tokens)
    accepted["per_prompt"] = dict(zip(texts, accepted["per_prompt"], strict=True))
    return {
        "version": PROFILE_VERSION,
        "pair": {"target": target.name, "draft": draft.name},
        "conditions": {
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            **(conditions or {}),
        },
        "draft_step_ms": draft_steps,
        "draft_prefill_ms": draft_prefills,
        "target_prefill_ms": prefills,
        "verify_ms": verifies,
        "acceptance": accepted,
        "message_bytes": message_sizes(range(0, 9), 16),
        "prompts": prompt_lengths(target, texts),
    }
