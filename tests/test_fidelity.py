"""The measures the fidelity suite judges the simulator by, and the round-time breakdown
that attributes an error to a part of the model."""

from __future__ import annotations

import random

import pytest
from records import round_event

from emulator.report.attribution import (
    COMPONENTS,
    breakdown,
    compare_breakdowns,
    format_breakdown,
    round_components,
)
from emulator.report.fidelity import ks_distance, mape, rank_agreement


def test_ks_distance_is_zero_for_the_same_samples_and_one_for_disjoint_ones() -> None:
    rng = random.Random(1)
    a = [rng.gauss(100, 10) for _ in range(500)]
    assert ks_distance(a, list(a)) == 0.0
    assert ks_distance(a, [x + 1000 for x in a]) == 1.0
    shifted = ks_distance(a, [x + 10 for x in a])  # one sigma: about 0.38
    assert 0.3 < shifted < 0.45
    assert ks_distance([], a) is None


def test_mape_and_rank_agreement() -> None:
    assert mape([0.1, -0.3, None]) == pytest.approx(0.2)
    assert mape([None]) is None
    emu = {"fixed:1": 5.0, "fixed:4": 3.0, "awc": 4.0}
    assert rank_agreement(emu, {"fixed:1": 6.0, "fixed:4": 2.0, "awc": 5.0}) == 1.0
    # awc and fixed:1 swap places: one pair of three disagrees
    assert rank_agreement(emu, {"fixed:1": 4.0, "fixed:4": 2.0, "awc": 5.0}) == pytest.approx(2 / 3)
    assert rank_agreement({"a": 1.0}, {"a": 2.0}) is None


def round_record(
    t_send: float, draft: float, up: float, queue: float, verify: float, down: float
) -> dict:
    """A round whose components are known (ms), as both worlds log it (times in s)."""
    server_recv = t_send + up / 1000
    server_send = server_recv + (queue + verify + 0.5) / 1000
    return round_event(
        draft_ms=draft,
        t_send=t_send,
        t_recv=server_send + down / 1000,
        server_t_recv=server_recv,
        server_t_send=server_send,
        queue_ms=queue,
        verify_ms=verify,
    )


def test_a_round_splits_into_its_components_and_worlds_are_compared_by_them() -> None:
    parts = round_components(round_record(10.0, 300, 40, 20, 180, 30))
    assert parts == pytest.approx(
        {"draft": 300, "uplink": 40, "queue": 20, "verify": 180, "server": 0.5, "downlink": 30}
    )
    assert round_components({**round_record(1, 1, 1, 1, 1, 1), "server_t_recv": None}) is None
    emu = [round_record(i, 300, 40, 20, 180, 30) for i in range(5)]
    sim = [round_record(i, 300, 40, 20, 120, 30) for i in range(5)]  # verify predicted short
    assert set(breakdown(emu)) == set(COMPONENTS)
    compared = compare_breakdowns(emu, sim)
    assert compared["verify"]["error"] == pytest.approx(-60 / 180)
    assert compared["verify"]["share"] == pytest.approx(1.0)
    assert compared["draft"]["difference_ms"] == pytest.approx(0.0)
    assert compare_breakdowns([], sim) == {}
    table = format_breakdown(compared).splitlines()
    assert table[0].split() == ["component", "emulated", "simulated", "error", "share"]
    assert table[5].split() == ["verify", "180.0", "120.0", "-33.3%", "100%"]
