"""Window policies on scripted observation sequences (the same objects both worlds call)."""

from __future__ import annotations

import itertools
import random

import pytest

from runtime.policies import (
    AWC,
    Fixed,
    Heuristic,
    RoundObservation,
    expected_tokens,
    make_window_policy,
)


def observe_rounds(
    policy,
    rounds: int,
    alpha: float,
    network_ms: float,
    draft_step_ms: float = 20.0,
    verify_ms_per_token: float = 10.0,
    seed: int = 1,
) -> list[int]:
    """Feed a policy rounds of a world with these parameters; returns the γ it chose."""
    rng = random.Random(seed)
    chosen = []
    for _ in range(rounds):
        gamma = policy.next_gamma(100)
        chosen.append(gamma)
        accepted = 0
        while accepted < gamma and rng.random() < alpha:
            accepted += 1
        verify = verify_ms_per_token * (4 + gamma + 1)
        policy.observe(
            RoundObservation(
                gamma=gamma,
                drafted=gamma,
                accepted=accepted,
                round_trip_ms=network_ms + verify,
                server_verify_ms=verify,
                server_queue_ms=0.0,
                batch_size=1,
                draft_step_ms=draft_step_ms,
                context_len=100,
            )
        )
    return chosen


def best_gamma(alpha: float, network_ms: float, step: float = 20.0, per_token: float = 10.0):
    def rate(g: int) -> float:
        return expected_tokens(alpha, g) / (g * step + network_ms + per_token * (5 + g))

    return max(range(1, 17), key=rate)


def test_expected_tokens_closed_form() -> None:
    assert expected_tokens(0.0, 5) == 1.0
    assert expected_tokens(1.0, 5) == 6.0
    assert expected_tokens(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)


def test_heuristic_grows_after_full_acceptance_and_shrinks_otherwise() -> None:
    policy = Heuristic(start=4)
    assert observe_rounds(policy, 4, alpha=1.0, network_ms=10) == [4, 6, 8, 10]
    policy = Heuristic(start=4)
    assert observe_rounds(policy, 5, alpha=0.0, network_ms=10) == [4, 3, 2, 1, 1]


def test_awc_grows_the_window_when_the_round_trip_jumps() -> None:
    policy = AWC()
    short = observe_rounds(policy, 60, alpha=0.8, network_ms=20)
    long = observe_rounds(policy, 60, alpha=0.8, network_ms=200, seed=2)
    assert short[-1] < long[-1]
    assert abs(long[-1] - best_gamma(0.8, 200)) <= 2
    assert abs(short[-1] - best_gamma(0.8, 20)) <= 2


def test_awc_shrinks_the_window_when_acceptance_collapses() -> None:
    policy = AWC()
    good = observe_rounds(policy, 60, alpha=0.9, network_ms=50)
    bad = observe_rounds(policy, 60, alpha=0.1, network_ms=50, seed=3)
    assert bad[-1] < good[-1]
    assert bad[-1] <= 2


def test_awc_does_not_oscillate_in_a_steady_world() -> None:
    chosen = observe_rounds(AWC(), 200, alpha=0.7, network_ms=60)
    settled = chosen[50:]
    changes = sum(a != b for a, b in itertools.pairwise(settled))
    assert changes < len(settled) / 10


def test_the_cloud_objective_spends_less_verify_work_per_token_on_a_slow_link() -> None:
    latency = observe_rounds(AWC("latency"), 80, alpha=0.5, network_ms=400)
    cloud = observe_rounds(AWC("cloud"), 80, alpha=0.5, network_ms=400)
    assert cloud[-1] < latency[-1]


def test_policy_specs() -> None:
    assert isinstance(make_window_policy("fixed:3"), Fixed)
    assert isinstance(make_window_policy("heuristic:6"), Heuristic)
    assert make_window_policy("awc").name == "awc-latency"
    assert make_window_policy("awc:cloud").name == "awc-cloud"
    for bad in ("awc:fast", "fixed:-1", "heuristic:0", "often"):
        with pytest.raises(ValueError):
            make_window_policy(bad)
