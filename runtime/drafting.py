"""The draft side of one request: its KV cache, proposing γ tokens, rolling back after a verdict.

Shared by the edge client (``dsd``, ``edge-only``) and the server's ``fused`` mode.
"""

from __future__ import annotations

import time

import torch

from runtime.kvcache import cache_length, crop_to, forward_one, new_cache
from runtime.models import LoadedModel
from runtime.proposal import Proposal, Timing
from runtime.sampling import SamplingParams
from runtime.verify import draft_distribution, sample_from


class DraftState:
    """Keeps the draft's cache in step with the committed tokens of one request.

    ``valid`` counts the cached positions that hold committed tokens; everything past it
    is a rejected guess and is cropped before the next proposal.
    """

    def __init__(self, draft: LoadedModel, params: SamplingParams, seed: int) -> None:
        self.draft = draft
        self.params = params
        self.cache = new_cache()
        self.valid = 0
        self.base = 0
        self.generator = torch.Generator().manual_seed(seed)

    def prefill(self, prompt: list[int]) -> Timing:
        """Cache the prompt ahead of the first proposal; returns the time it took."""
        start, cpu_start = time.perf_counter(), time.thread_time()
        forward_one(self.draft.model, self.cache, prompt, 1)
        self.valid = len(prompt)
        return Timing(
            (time.perf_counter() - start) * 1000.0, (time.thread_time() - cpu_start) * 1000.0
        )

    def propose(self, committed: list[int], gamma: int) -> Proposal:
        start, cpu_start = time.perf_counter(), time.thread_time()
        self.base = len(committed)
        if gamma == 0:
            return Proposal([], None, None, 0.0)
        crop_to(self.cache, self.valid)
        logits = forward_one(self.draft.model, self.cache, committed[self.valid :], 1)[-1]
        tokens: list[int] = []
        q_ids, q_probs = [], []
        for index in range(gamma):
            if self.params.greedy:
                token = int(logits.argmax())
            else:
                ids, probs = draft_distribution(logits, self.params)
                token = sample_from(ids, probs, self.generator)
                q_ids.append(ids)
                q_probs.append(probs)
            tokens.append(token)
            if index < gamma - 1:
                logits = forward_one(self.draft.model, self.cache, [token], 1)[-1]
        draft_ms = (time.perf_counter() - start) * 1000.0
        cpu_ms = (time.thread_time() - cpu_start) * 1000.0
        if self.params.greedy:
            return Proposal(tokens, None, None, draft_ms, cpu_ms)
        return Proposal(tokens, torch.stack(q_ids), torch.stack(q_probs), draft_ms, cpu_ms)

    def accept(self, accepted: int) -> None:
        """After a verdict: the first ``accepted`` drafted tokens are now committed."""
        self.valid = min(cache_length(self.cache), self.base + accepted)

    def close(self) -> None:
        """The request is over (the cache goes with this object)."""
