"""The simulator's drawn workloads (answer and prompt lengths, think times), its fanout of
targets, pools of different target models, and DSD-Sim's fixed-round semantics beside ours."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_gpu_profiles import needs_vidur
from test_sim import rounds_of, simulate, synthetic_profile

from emulator.scenario import Overrides, ScenarioError, ThinkTime, load_scenario
from emulator.sim.gpu_model import GpuModel
from emulator.sim.requests import think_draw
from emulator.sim.simulation import SimOptions, Simulation
from runtime.arrivals import random_stream
from runtime.events import EventLog


def write(folder: Path, workload: dict[str, Any], cloud: dict | None = None, **group: Any) -> Path:
    scenario = {
        "name": "drawn",
        "seed": 3,
        "cloud": cloud or {"batching": {"max_batch": 8, "max_wait_ms": 2}},
        "edges": [
            {"name": "e", "count": 4, "policy": "fixed:4", "link": {"constant": {"delay_ms": 5}}}
            | group
        ],
        "workload": workload,
    }
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def profile_file(folder: Path, **args: Any) -> Path:
    path = folder / "profile.json"
    path.write_text(json.dumps(synthetic_profile(**args)))
    return path


def requests_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "request"]


def test_answers_and_prompts_are_drawn_within_their_bounds(tmp_path: Path) -> None:
    workload = {
        "requests_per_edge": 25,
        "answer_tokens": {"mean": 60, "std": 30, "min": 20, "max": 90},
        "prompt_tokens": {"min": 24, "max": 512},
    }
    events = simulate(write(tmp_path, workload), profile_file(tmp_path))
    requests = requests_of(events)
    assert len(requests) == 100 and not any("error" in r for r in requests)
    answers = [r["output_tokens"] for r in requests]
    prompts = [r["prompt_tokens"] for r in requests]
    assert min(answers) >= 20 and max(answers) <= 90
    assert min(answers) == 20 and max(answers) == 90  # a std of 30 reaches both clips
    assert 50 < statistics.fmean(answers) < 70
    assert min(prompts) >= 24 and max(prompts) <= 512 and len(set(prompts)) > 50


def test_a_closed_loop_waits_its_think_time_between_requests(tmp_path: Path) -> None:
    workload = {
        "requests_per_edge": 30,
        "max_new_tokens": 10,
        "arrival": {"think_time_ms": {"mean": 1700, "cv": 0.6, "min": 220}},
    }
    events = simulate(write(tmp_path, workload), profile_file(tmp_path))
    gaps = []
    for edge in ("e1", "e2", "e3", "e4"):
        mine = sorted(
            (r for r in requests_of(events) if r["edge"] == edge), key=lambda r: r["t_arrival"]
        )
        gaps += [(b["t_arrival"] - a["t_done"]) * 1000 for a, b in itertools.pairwise(mine)]
        assert mine[0]["t_arrival"] >= 0.220  # the first request waits a think time too
    assert len(gaps) == 4 * 29 and min(gaps) >= 220 - 1e-6
    assert 1400 < statistics.fmean(gaps) < 2000
    assert 0.4 < statistics.stdev(gaps) / statistics.fmean(gaps) < 0.8


def test_think_draws_have_the_given_mean_and_cv() -> None:
    rng = random_stream(1, "think")
    draws = [think_draw(ThinkTime(1700, 0.6), rng) for _ in range(40_000)]
    assert statistics.fmean(draws) == pytest.approx(1700, rel=0.02)
    assert statistics.stdev(draws) / statistics.fmean(draws) == pytest.approx(0.6, rel=0.04)
    assert think_draw(ThinkTime(1700, 0.0, 2000), rng) == 2000


def test_each_edge_is_routed_among_its_fanout_only(tmp_path: Path) -> None:
    cloud = {"targets": 6, "fanout": 2, "router": "jsq", "batching": {"max_batch": 4}}
    path = write(tmp_path, {"requests_per_edge": 6, "max_new_tokens": 12}, cloud, count=8)
    log = EventLog(None, "sim", keep=True)
    simulation = Simulation(
        load_scenario(path), log, SimOptions(profile=str(profile_file(tmp_path)))
    )
    simulation.run()
    fanout = simulation.server.fanout
    routes = [e for e in log.events if e["event"] == "route"]
    assert len(routes) == 48
    used: dict[str, set[int]] = {}
    for route in routes:
        edge = route["session"].rsplit("-", 1)[0]
        assert route["target"] in fanout[edge]
        used.setdefault(edge, set()).add(route["target"])
    assert all(len(targets) == 2 for targets in fanout.values())
    assert any(len(targets) == 2 for targets in used.values())  # JSQ spreads within them
    assert len({t for targets in fanout.values() for t in targets}) > 2
    assert "fanout" in (load_scenario(path).simulator_only() or "")


def test_target_pools_and_fanout_are_validated(tmp_path: Path) -> None:
    for cloud, why in [
        ({"targets": 2, "fanout": 3}, r"fanout: must be in \[1, 2\]"),
        ({"model": "x@h100", "targets": [{"model": "y@h100"}]}, "in each pool"),
        ({"targets": []}, "at least one pool"),
        ({"targets": [{"model": "x@9ms", "count": 2}]}, "a target runs on a GPU"),
    ]:
        with pytest.raises(ScenarioError, match=why):
            load_scenario(write(tmp_path, {}, cloud))


@needs_vidur
def test_targets_of_each_pool_verify_at_their_own_models_times(tmp_path: Path) -> None:
    cloud = {
        "targets": [{"model": "llama-2-70b@a100", "count": 1}, {"model": "qwen-72b@h100"}],
        "router": "round-robin",
        "batching": {"max_batch": 1},
    }
    group = {"draft": "llama-2-7b@a40", "acceptance": {"alpha": 0.8, "source": "test"}}
    path = write(tmp_path, {"requests_per_edge": 1, "max_new_tokens": 30}, cloud, **group)
    log = EventLog(None, "sim", keep=True)
    Simulation(load_scenario(path), log, SimOptions()).run()
    target_of = {e["session"]: e["target"] for e in log.events if e["event"] == "route"}
    models = [GpuModel("llama-2-70b", "a100"), GpuModel("qwen-72b", "h100")]
    assert set(target_of.values()) == {0, 1}
    for r in rounds_of(log.events):
        before = r["context_len"] - r["emitted"]
        model = models[target_of[r["session"]]]
        assert r["verify_ms"] == pytest.approx(
            model.forward([(r["gamma"] + 1, before - 1)]).total_ms, rel=1e-7
        )


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_fixed_rounds_end_requests_at_budget_over_gamma_whatever_was_accepted(
    tmp_path: Path, alpha: float
) -> None:
    """DSD-Sim's semantics: ceil(L / γ) rounds, credited L tokens; ours: rounds until L
    tokens were emitted (fewer rounds at α = 1, more at α = 0.5)."""
    path = write(tmp_path, {"requests_per_edge": 3, "max_new_tokens": 41})
    profile = profile_file(tmp_path, alpha=alpha)
    ours = requests_of(simulate(path, profile))
    fixed = requests_of(simulate(path, profile, fixed_rounds=True))
    assert all(r["rounds"] == math.ceil(41 / 4) for r in fixed)
    assert all(r["output_tokens"] == 41 for r in fixed + ours)
    rounds = statistics.fmean(r["rounds"] for r in ours)
    if alpha == 1.0:
        assert all(r["rounds"] == math.ceil(40 / 5) for r in ours)  # 5 tokens a round
    else:
        assert rounds > math.ceil(41 / 4)
    with pytest.raises(ValueError, match="fixed window"):
        simulate(path, profile, fixed_rounds=True, policy="awc")


def test_changes_to_a_scenario_are_one_kind_for_both_worlds(tmp_path: Path) -> None:
    """Edges, policy, seed and workload change through ``Overrides`` alone, in the simulator
    as in the emulator; what only the simulator can run (the oracle, thousands of edges in a
    group) loads, and the emulator is told why it cannot run it."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nedges:\n  - {name: e, draft: int8, link: {constant: {delay_ms: 5}}}\n"
    )
    many = load_scenario(path, Overrides(edges=5000, policy="oracle", seed=9))
    assert len(many.edge_hosts()) == 5000 and many.seed == 9
    assert "at most 64 per group" in (many.simulator_only() or "")
    oracle = load_scenario(path, Overrides(policy="oracle"))
    assert "oracle" in (oracle.simulator_only() or "")
    assert load_scenario(path, Overrides(policy="awc")).simulator_only() is None
    with pytest.raises(ScenarioError, match="policy"):
        load_scenario(path, Overrides(policy="clairvoyant"))
