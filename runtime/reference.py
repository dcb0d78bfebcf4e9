"""The target's own greedy decode by transformers' ``generate``: code that shares nothing
with the runtime's verification, the reference that losslessness is held to (the tests, the
runtime benchmark, chaos's restarted target)."""

from __future__ import annotations

import torch

from runtime.models import LoadedModel


def generate_greedy(
    target: LoadedModel, prompt: list[int], tokens: int, ignore_eos: bool = False
) -> list[int]:
    """``tokens`` greedy tokens after ``prompt``; unless ``ignore_eos``, ending after the
    first end token, as a request does."""
    ids = torch.tensor([prompt])
    stops = target.eos_ids and not ignore_eos
    with torch.inference_mode():
        out = target.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=tokens,
            min_new_tokens=0 if stops else tokens,
            pad_token_id=0,
        )
    result = out[0, len(prompt) :].tolist()
    if stops:
        for index, token in enumerate(result):
            if token in target.eos_ids:
                return result[: index + 1]
    return result
