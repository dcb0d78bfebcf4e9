"""Window policies on scripted observation sequences (the same objects both worlds call)."""

from __future__ import annotations

import copy
import itertools
import json
import random
import shlex

import numpy as np
import pytest
from cli import run_command

from runtime.estimates import WINDOW_FEATURES
from runtime.mlp import Mlp, train_mlp
from runtime.observations import RoundObservation, peer_widths
from runtime.policies import (
    AWC,
    LEARNED_WEIGHTS,
    AWCLearned,
    Fixed,
    Heuristic,
    expected_tokens,
    make_window_policy,
)
from runtime.utilisation import BusyMeter


def observe_rounds(
    policy,
    rounds: int,
    alpha: float,
    network_ms: float,
    draft_step_ms: float = 20.0,
    verify_ms_per_token: float = 10.0,
    seed: int = 1,
    queue_batches: float = 0.0,
    others_width: int = 0,
) -> list[int]:
    """Feed a policy rounds of a world with these parameters; returns the γ it chose.
    ``queue_batches``: each request waits that many batches' verify time; ``others_width``:
    other rows pad every batch to this width."""
    rng = random.Random(seed)
    chosen = []
    for _ in range(rounds):
        gamma = policy.next_gamma(100)
        chosen.append(gamma)
        accepted = 0
        while accepted < gamma and rng.random() < alpha:
            accepted += 1
        width = max(gamma + 1, others_width)
        verify = verify_ms_per_token * (4 + width)
        queue = queue_batches * verify
        policy.observe(
            RoundObservation(
                gamma=gamma,
                drafted=gamma,
                accepted=accepted,
                round_trip_ms=network_ms + queue + verify,
                server_verify_ms=verify,
                server_queue_ms=queue,
                batch_size=8 if others_width or queue_batches else 1,
                draft_step_ms=draft_step_ms,
                context_len=100,
                batch_width=width,
                peer_width=others_width,
                utilisation=1.0 if queue_batches else verify / (network_ms + queue + verify),
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


def test_each_row_learns_the_width_of_the_longest_other_row() -> None:
    assert peer_widths([3]) == [0]
    assert peer_widths([2, 5, 3]) == [5, 3, 5]
    assert peer_widths([4, 4, 1]) == [4, 4, 4]


def test_policy_specs() -> None:
    assert isinstance(make_window_policy("fixed:3"), Fixed)
    assert isinstance(make_window_policy("heuristic:6"), Heuristic)
    assert make_window_policy("awc").name == "awc-latency"
    assert make_window_policy("awc:cloud").name == "awc-cloud"
    assert make_window_policy("learned").name == "awc-learned"
    for bad in ("awc:fast", "fixed:-1", "heuristic:0", "often"):
        with pytest.raises(ValueError):
            make_window_policy(bad)


def test_awc_does_not_read_one_fully_accepted_round_as_certain_acceptance() -> None:
    policy = AWC()
    policy.observe(RoundObservation(4, 4, 4, 120.0, 50.0, 0.0, 1, 20.0, 100, 5))
    assert policy.estimates.alpha() < 0.75
    assert policy.next_gamma(100) <= 6


def test_awc_ignores_a_one_round_spike_but_follows_a_lasting_change() -> None:
    policy = AWC()
    observe_rounds(policy, 60, alpha=0.7, network_ms=30)
    settled = policy.gamma
    verify = 10.0 * (4 + settled + 1)
    calm, spiked = copy.deepcopy(policy), copy.deepcopy(policy)
    calm.observe(RoundObservation(settled, settled, 2, 30.0 + verify, verify, 0.0, 1, 20.0, 100))
    spiked.observe(
        RoundObservation(settled, settled, 2, 2000.0 + verify, verify, 0.0, 1, 20.0, 100)
    )
    assert spiked.next_gamma(100) == calm.next_gamma(100)
    lasting = observe_rounds(policy, 6, alpha=0.7, network_ms=400, seed=4)
    assert lasting[-1] > settled


def test_awc_drafts_up_to_the_width_other_rows_pad_the_batch_to() -> None:
    """A fast drafter alone keeps γ small; when other rows pad every batch to 7 tokens, the
    verify time is paid anyway and only the cheap drafting is left to weigh."""
    alone = observe_rounds(AWC(), 60, alpha=0.6, network_ms=10, draft_step_ms=2.0)
    padded = observe_rounds(AWC(), 60, alpha=0.6, network_ms=10, draft_step_ms=2.0, others_width=7)
    assert alone[-1] <= 2
    assert padded[-1] >= 5
    assert len(set(padded[-20:])) == 1  # and stays there


def test_awc_drafts_less_when_the_queue_is_other_batches_verify_work() -> None:
    """On a saturated server (always busy, requests waiting three batches) the round time
    is the server's cycle, which grows with every row's width: long windows cost more than
    the edge's own verify time."""
    idle = observe_rounds(AWC(), 80, alpha=0.8, network_ms=1000, verify_ms_per_token=50.0)
    busy = observe_rounds(
        AWC(), 80, alpha=0.8, network_ms=1000, verify_ms_per_token=50.0, queue_batches=3.0
    )
    assert busy[-1] < idle[-1]


def test_the_learned_policy_loads_and_decides_without_torch() -> None:
    """A fresh interpreter in which importing torch fails: the policy must not need it."""
    program = """
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
from runtime.observations import RoundObservation
from runtime.policies import make_window_policy
policy = make_window_policy("learned")
for _ in range(30):
    gamma = policy.next_gamma(100)
    policy.observe(RoundObservation(gamma, gamma, gamma // 2, 260.0, 60.0, 0.0, 1, 25.0, 100))
print(policy.next_gamma(100), "torch" in sys.modules and sys.modules["torch"] is not None)
"""
    done = run_command(f"-c {shlex.quote(program)}", timeout=60)
    assert done.returncode == 0, done.stderr
    gamma, torch_loaded = done.stdout.split()
    assert 1 <= int(gamma) <= 10
    assert torch_loaded == "False"


def test_the_learned_policy_grows_the_window_on_a_long_round_trip() -> None:
    short = observe_rounds(AWCLearned(), 60, alpha=0.8, network_ms=20, draft_step_ms=70.0)
    long = observe_rounds(AWCLearned(), 60, alpha=0.8, network_ms=600, draft_step_ms=70.0)
    assert long[-1] > short[-1]


def test_weights_files_are_checked_when_loaded(tmp_path) -> None:
    data = json.loads(LEARNED_WEIGHTS.read_text())
    assert data["training"]["world_ranges"]  # the training set is described
    network = Mlp.from_json(data["network"])
    again = Mlp.from_json(json.loads(json.dumps(network.to_json())))
    features = np.linspace(0.1, 2.0, len(WINDOW_FEATURES))
    assert np.allclose(network(features), again(features))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**data, "features": ["acceptance"]}))
    with pytest.raises(ValueError, match="other features"):
        make_window_policy(f"learned:{other}")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**data, "network": {**data["network"], "biases": [[0.0]]}}))
    with pytest.raises(ValueError, match="not a learned window policy"):
        make_window_policy(f"learned:{broken}")
    with pytest.raises(ValueError, match="cannot read"):
        make_window_policy(f"learned:{tmp_path / 'missing.json'}")


def test_the_busy_meter_counts_only_the_recent_window() -> None:
    meter = BusyMeter(10.0)
    meter.add(0.0, 2.0)
    meter.add(5.0, 6.0)
    assert meter.share(10.0) == pytest.approx(0.3)
    assert meter.share(13.0) == pytest.approx(0.1)  # the first span has left the window
    meter.add(12.0, 20.0)
    assert meter.share(14.0) == pytest.approx(0.3)  # a span still running counts so far
    assert len(meter.spans) == 2


def test_the_mlp_training_fits_a_smooth_function() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (2000, 3))
    y = np.stack([np.sin(2.0 * x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    network, losses = train_mlp(x, y, hidden=(16,), epochs=200, seed=0)
    assert losses[-1] < losses[0] / 100
    assert np.abs(network(x[:200]) - y[:200]).mean() < 0.05
