"""Verification rules: greedy acceptance, and lossless stochastic speculative sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.drafting import DraftState
from runtime.kvcache import forward_one, new_cache
from runtime.models import make_draft
from runtime.sampling import SamplingParams, truncate_emitted
from runtime.verify import draft_distribution, greedy_verify, stochastic_verify, target_probs


def one_hot_logits(choices: list[int], vocab: int = 10) -> torch.Tensor:
    logits = torch.zeros(len(choices), vocab)
    logits[torch.arange(len(choices)), torch.tensor(choices)] = 5.0
    return logits


def test_greedy_accepts_prefix_then_corrects() -> None:
    logits = one_hot_logits([3, 4, 7, 1])
    assert greedy_verify([3, 4, 5], logits) == (2, 7)


def test_greedy_full_accept_gives_bonus() -> None:
    assert greedy_verify([3, 4, 7], one_hot_logits([3, 4, 7, 1])) == (3, 1)
    assert greedy_verify([], one_hot_logits([9])) == (0, 9)


def test_truncate_stops_at_budget_and_eos() -> None:
    assert truncate_emitted([1, 2, 3], 2, set()) == ([1, 2], True)
    assert truncate_emitted([1, 9, 3], 5, {9}) == ([1, 9], True)
    assert truncate_emitted([1, 2], 5, {9}) == ([1, 2], False)


def test_top_k_and_top_p_restrict_support() -> None:
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    p = target_probs(logits, SamplingParams(temperature=1.0, top_k=2))
    assert (p[2:] == 0).all() and abs(float(p.sum()) - 1) < 1e-6
    p = target_probs(logits, SamplingParams(temperature=1.0, top_p=0.5))
    assert p[0] == 1.0
    ids, q = draft_distribution(logits, SamplingParams(temperature=1.0, draft_top_k=3))
    assert ids.tolist() == [0, 1, 2] and abs(float(q.sum()) - 1) < 1e-6


def tv_null_quantile(p: np.ndarray, n: int, quantile: float, rng: np.random.Generator) -> float:
    """The TV distance that direct sampling from p reaches at this quantile (sampling error)."""
    draws = rng.multinomial(n, p, size=400) / n
    return float(np.quantile(np.abs(draws - p).sum(axis=1) / 2, quantile))


def test_stochastic_verify_preserves_target_distribution_synthetic() -> None:
    """With p and a very different sparse q, emitted tokens follow p exactly."""
    vocab, trials = 6, 20000
    p_row = torch.tensor([0.35, 0.25, 0.2, 0.1, 0.07, 0.03])
    p = p_row.repeat(2, 1)
    q_ids = torch.tensor([[5, 4, 0]])
    q_probs = torch.tensor([[0.6, 0.3, 0.1]])
    generator = torch.Generator().manual_seed(1)
    counts = np.zeros(vocab)
    for _ in range(trials):
        draft = [int(q_ids[0, torch.multinomial(q_probs[0], 1, generator=generator)])]
        accepted, token = stochastic_verify(draft, q_ids, q_probs, p, generator)
        counts[draft[0] if accepted else token] += 1
    tv = np.abs(counts / trials - p_row.numpy()).sum() / 2
    bound = tv_null_quantile(p_row.numpy(), trials, 0.99, np.random.default_rng(0))
    assert tv <= bound, f"TV {tv:.4f} exceeds sampling error {bound:.4f}"


@pytest.mark.slow
def test_stochastic_dsd_matches_target_on_tiny_model(tiny_target) -> None:
    """The first token DSD emits after the target's opening token follows the target's marginal."""
    params = SamplingParams(temperature=1.0, draft_top_k=8, seed=0)
    draft = make_draft("perturbed:0.6", tiny_target)  # far from the target: many rejections
    prompt = [5, 17, 42, 99]
    cache = new_cache()
    first_logits = forward_one(tiny_target.model, cache, prompt, 1)[-1]
    p1 = target_probs(first_logits, params)
    # Exact marginal of the second token: sum over t1 of p(t1) p(t2 | t1).
    vocab = p1.shape[0]
    ids = torch.tensor([[*prompt, t] for t in range(vocab)])
    with torch.inference_mode():
        second = tiny_target.model(input_ids=ids).logits[:, -1]
    p2 = (p1[:, None] * target_probs(second, params)).sum(dim=0)

    trials, gamma = 3000, 3
    generator = torch.Generator().manual_seed(7)
    counts = np.zeros(vocab)
    for trial in range(trials):
        drafter = DraftState(draft, params, seed=trial)
        drafter.prefill(prompt)
        t1 = int(torch.multinomial(p1, 1, generator=generator))  # the target's first token
        committed = [*prompt, t1]
        proposal = drafter.propose(committed, gamma)
        target_cache = new_cache()
        logits = forward_one(
            tiny_target.model, target_cache, [*committed, *proposal.tokens], gamma + 1
        )
        accepted, token = stochastic_verify(
            proposal.tokens,
            proposal.q_ids,
            proposal.q_probs,
            target_probs(logits, params),
            generator,
        )
        emitted = [*proposal.tokens[:accepted], token]
        counts[emitted[0]] += 1
    p_np = p2.double().numpy()
    p_np = p_np / p_np.sum()
    tv = np.abs(counts / trials - p_np).sum() / 2
    bound = tv_null_quantile(p_np, trials, 0.99, np.random.default_rng(0))
    assert tv <= bound, f"TV {tv:.4f} exceeds sampling error {bound:.4f}"
