"""Bytes of each protocol message as encoded, for the simulator's link model (torch-free:
a profile measured here and a profile built from GPU tables both carry them)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from runtime import protocol
from runtime.sampling import SamplingParams


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
