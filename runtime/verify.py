"""Speculative-decoding verification as pure tensor functions.

Greedy verification accepts draft tokens while they equal the target's argmax. Stochastic
verification is the lossless speculative sampling rule (Leviathan et al., Chen et al.):
accept draft token x with probability min(1, p(x)/q(x)); on the first rejection sample
from normalise(max(0, p - q)); after a full accept sample a bonus token from p. The
draft samples from a top-k-truncated q, so q travels exactly as (ids, probs) pairs.
"""

from __future__ import annotations

import torch

from runtime.sampling import SamplingParams


def target_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Warp logits [..., V] into the distribution p the output must follow."""
    scaled = logits.float() / max(params.temperature, 1e-6)
    if params.top_k > 0 and params.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, params.top_k, dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= params.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scaled = scaled.masked_fill(drop, float("-inf"))
    return torch.softmax(scaled, dim=-1)


def draft_distribution(
    logits: torch.Tensor, params: SamplingParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """The draft's q for one position: top-``draft_top_k`` of its warped distribution, renormalised.

    Returns (ids int64 [k], probs float32 [k]); these exact values travel to the target.
    """
    probs = target_probs(logits, params)
    k = min(params.draft_top_k, probs.shape[-1])
    top = torch.topk(probs, k, dim=-1)
    q = top.values.to(torch.float32)
    q = q / q.sum()
    return top.indices, q


def sample_from(ids: torch.Tensor, probs: torch.Tensor, generator: torch.Generator) -> int:
    """Draw one id from a sparse distribution given as (ids, probs)."""
    choice = torch.multinomial(probs, 1, generator=generator)
    return int(ids[choice])


def greedy_verify(draft_ids: list[int], logits: torch.Tensor) -> tuple[int, int]:
    """Return (accepted count, next token) for logits [γ+1, V] over [pending, d1..dγ]."""
    choices = logits.argmax(dim=-1).tolist()
    accepted = 0
    for position, token in enumerate(draft_ids):
        if choices[position] != token:
            break
        accepted += 1
    return accepted, int(choices[accepted])


def stochastic_verify(
    draft_ids: list[int],
    q_ids: torch.Tensor,
    q_probs: torch.Tensor,
    p: torch.Tensor,
    generator: torch.Generator,
) -> tuple[int, int]:
    """Lossless speculative sampling over target probabilities p [γ+1, V].

    ``q_ids``/``q_probs`` [γ, k] give the draft's sparse q for each drafted position.
    """
    for position, token in enumerate(draft_ids):
        row_ids, row_q = q_ids[position], q_probs[position]
        matches = (row_ids == token).nonzero()
        q_token = float(row_q[matches[0, 0]]) if matches.numel() else 0.0
        p_token = float(p[position, token])
        u = float(torch.rand(1, generator=generator))
        if q_token > 0.0 and u * q_token < p_token:
            continue
        residual = p[position].clone()
        residual[row_ids.long()] -= row_q.to(residual.dtype)
        residual.clamp_(min=0.0)
        total = float(residual.sum())
        distribution = residual / total if total > 0.0 else p[position]
        token_out = int(torch.multinomial(distribution, 1, generator=generator))
        return position, token_out
    bonus = int(torch.multinomial(p[len(draft_ids)], 1, generator=generator))
    return len(draft_ids), bonus
