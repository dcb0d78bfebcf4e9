"""Stochastic DSD end to end: requests through a real target server (ZeroMQ on loopback)
whose whole output follows the target's own sampling distribution, token by token.

The target samples from its top 3 tokens, so the exact distribution of a 4-token answer is
81 sequences, computed here by the model's forward passes alone (independent of the
verification code). A draft window of 2 makes a round accept 0, 1 or 2 tokens and add a
bonus, so every branch of ``stochastic_verify`` is taken: acceptance at positions 0 and 1,
the residual after a rejection, and the bonus token. The same check is run against three
broken verifications, each of which it must catch: that is the test's power, shown."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from runtime import target as target_module
from runtime.draft import EdgeClient, EdgeSettings
from runtime.events import EventLog
from runtime.models import LoadedModel, make_draft
from runtime.policies import Fixed
from runtime.sampling import SamplingParams
from runtime.verify import target_probs

PROMPT = [5, 17, 42, 99]
TOKENS = 4  # the opened token, then rounds of γ = 2 (the budget caps γ at what is left - 1)
TRIALS = 1500
PARAMS = SamplingParams(temperature=1.0, top_k=3, draft_top_k=4, ignore_eos=True)


def exact_answers(target: LoadedModel) -> dict[tuple[int, ...], float]:
    """P(answer) for every answer of TOKENS tokens: the product of the target's sampling
    distributions along it, from forward passes over each prefix."""
    answers: dict[tuple[int, ...], float] = {(): 1.0}
    for _ in range(TOKENS):
        grown = {}
        prefixes = list(answers)
        ids = torch.tensor([[*PROMPT, *prefix] for prefix in prefixes])
        with torch.inference_mode():
            logits = target.model(input_ids=ids).logits[:, -1]
        probs = target_probs(logits, PARAMS)
        for prefix, row in zip(prefixes, probs, strict=True):
            for token in row.nonzero().flatten().tolist():
                grown[(*prefix, token)] = answers[prefix] * float(row[token])
        answers = grown
    return answers


def sampled_answers(
    endpoint: str, draft: LoadedModel, log: EventLog | None = None
) -> Counter[tuple[int, ...]]:
    """TRIALS answers from the server, each request seeded on its own."""
    counts: Counter[tuple[int, ...]] = Counter()
    for seed in range(TRIALS):
        params = SamplingParams(**{**PARAMS.to_dict(), "seed": seed})
        settings = EdgeSettings("e2e", Fixed(2), params, log, timeout_s=30)
        client = EdgeClient(endpoint, draft, settings)
        try:
            counts[tuple(client.request(PROMPT, TOKENS).output_ids)] += 1
        finally:
            client.close()
    return counts


def tv_distance(counts: Counter[tuple[int, ...]], exact: dict[tuple[int, ...], float]) -> float:
    total = sum(counts.values())
    outcomes = set(counts) | set(exact)
    return sum(abs(counts[o] / total - exact.get(o, 0.0)) for o in outcomes) / 2


def tv_bound(exact: dict[tuple[int, ...], float]) -> float:
    """The TV distance that TRIALS direct draws from the exact distribution exceed once in
    a thousand: the sampling error a correct server is allowed."""
    p = np.array(list(exact.values()))
    draws = np.random.default_rng(0).multinomial(TRIALS, p / p.sum(), size=2000) / TRIALS
    return float(np.quantile(np.abs(draws - p / p.sum()).sum(axis=1) / 2, 0.999))


def residual_is_the_target(draft_ids, q_ids, q_probs, p, generator):
    """Broken: after a rejection it samples the target's own row, not the residual."""
    for position, token in enumerate(draft_ids):
        row_ids, row_q = q_ids[position], q_probs[position]
        matches = (row_ids == token).nonzero()
        q_token = float(row_q[matches[0, 0]]) if matches.numel() else 0.0
        u = float(torch.rand(1, generator=generator))
        if q_token > 0.0 and u * q_token < float(p[position, token]):
            continue
        return position, int(torch.multinomial(p[position], 1, generator=generator))
    return len(draft_ids), int(torch.multinomial(p[len(draft_ids)], 1, generator=generator))


def bonus_from_the_last_drafted_position(draft_ids, q_ids, q_probs, p, generator):
    """Broken: the bonus token drawn at the last drafted position instead of after it."""
    accepted, token = target_module_verify(draft_ids, q_ids, q_probs, p, generator)
    if accepted == len(draft_ids):
        token = int(torch.multinomial(p[len(draft_ids) - 1], 1, generator=generator))
    return accepted, token


def position_zero_everywhere(draft_ids, q_ids, q_probs, p, generator):
    """Broken: every drafted token judged by position 0's target and draft distributions."""
    shifted_q_ids = q_ids[:1].expand_as(q_ids)
    shifted_q_probs = q_probs[:1].expand_as(q_probs)
    shifted_p = torch.cat([p[:1].expand(len(draft_ids), -1), p[len(draft_ids) :]])
    return target_module_verify(draft_ids, shifted_q_ids, shifted_q_probs, shifted_p, generator)


target_module_verify = target_module.stochastic_verify


@pytest.mark.slow
def test_stochastic_dsd_through_the_server_samples_the_targets_distribution(
    tiny_target, start_server, monkeypatch
) -> None:
    exact = exact_answers(tiny_target)
    assert len(exact) == 3**TOKENS and sum(exact.values()) == pytest.approx(1.0)
    bound = tv_bound(exact)
    draft = make_draft("perturbed:0.3", tiny_target)
    server = start_server(tiny_target)
    log = EventLog(None, "e2e", keep=True)
    answers = sampled_answers(server.endpoint, draft, log)
    assert all(len(answer) == TOKENS for answer in answers)
    accepted = Counter(e["accepted"] for e in log.events if e["event"] == "round")
    assert set(accepted) == {0, 1, 2}, accepted  # rejections at 0 and 1, and bonus tokens
    assert tv_distance(answers, exact) <= bound, (tv_distance(answers, exact), bound)
    for broken in (
        residual_is_the_target,
        bonus_from_the_last_drafted_position,
        position_zero_everywhere,
    ):
        monkeypatch.setattr(target_module, "stochastic_verify", broken)
        caught = tv_distance(sampled_answers(server.endpoint, draft), exact)
        assert caught > bound, f"{broken.__name__} passed: TV {caught:.3f} <= {bound:.3f}"
