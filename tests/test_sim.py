"""DSD-Sim against closed forms, and its determinism, links, batching and policy feed.

The simulator runs in-process here (it needs no model): scenarios are written to a
temporary folder with constant or two-piece links and a synthetic profile whose numbers
make the expected results exact or known in closed form.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from emulator.scenario import Overrides, load_scenario
from emulator.sim.calibration import (
    CalibrationError,
    PairProfile,
    grid_ms,
    probed_prefill_speed,
    probed_unequal_rows,
    probed_verify_speeds,
    reference_profile,
    sample_run,
)
from emulator.sim.cpu import CoreShare, SharedCore
from emulator.sim.engine import Engine
from emulator.sim.links import LinkSchedule, SimLink, wire_bytes
from emulator.sim.messages import Verify
from emulator.sim.packet_links import PacketLink
from emulator.sim.server import Session
from emulator.sim.simulation import SimOptions, Simulation
from emulator.sim.window_policies import simulated_window_policy
from emulator.traces.csvio import write_trace
from emulator.traces.linktrace import LinkTrace
from runtime.cpuquota import CpuQuota
from runtime.events import EventLog
from runtime.metrics import summarise
from runtime.observations import RoundObservation, observation_from_round
from runtime.profile_store import PROFILE_VERSION

ROOT = Path(__file__).resolve().parents[1]
GRID_BATCHES, GRID_TOKENS, GRID_CONTEXTS = [1, 2, 4, 8], [1, 3, 5, 9], [64, 256, 512]


def synthetic_profile(
    alpha: float = 0.8,
    step_ms: float = 10.0,
    verify: Any = 50.0,
    prefill_ms: float = 30.0,
) -> dict[str, Any]:
    """A profile with constant acceptance α per position and simple compute times;
    ``verify`` is a constant or a function of (batch, tokens, context)."""

    def verify_ms(b: int, t: int, c: int) -> float:
        return verify(b, t, c) if callable(verify) else verify

    return {
        "version": PROFILE_VERSION,
        "pair": {"target": "synthetic", "draft": "synthetic"},
        "conditions": {"torch_threads": 1, "threads": 1},
        "draft_step_ms": [{"context": c, "ms": step_ms} for c in GRID_CONTEXTS],
        "draft_prefill_ms": [{"prompt_tokens": n, "ms": prefill_ms} for n in (16, 64, 256)],
        "target_prefill_ms": [{"prompt_tokens": n, "ms": prefill_ms} for n in (16, 64, 256)],
        "verify_ms": [
            {"batch": b, "tokens": t, "context": c, "ms": verify_ms(b, t, c)}
            for b in GRID_BATCHES
            for t in GRID_TOKENS
            for c in GRID_CONTEXTS
        ],
        "acceptance": {"gamma": 8, "per_position": [alpha] * 8, "overall": None},
        "message_bytes": {
            "open": [[16, 200], [64, 400], [256, 1200]],
            "verify_greedy": [[g, 69 + 4 * g] for g in range(9)],
            "verify_sampled": [[g, 87 + 132 * g] for g in range(9)],
            "verdict": 152,
            "opened": 105,
            "close": 37,
            "closed": 38,
        },
        "prompts": {"template_tokens": 30, "chars_per_token": 4.0, "measured": {}},
    }


def write_scenario(
    folder: Path,
    link: dict[str, Any],
    edges: int = 1,
    policy: str = "fixed:4",
    requests: int = 1,
    tokens: int = 64,
    seed: int = 1,
    max_wait_ms: float = 20.0,
    wan: dict[str, Any] | None = None,
    **profile_args: Any,
) -> tuple[Path, Path]:
    profile = folder / "profile.json"
    profile.write_text(json.dumps(synthetic_profile(**profile_args)))
    scenario = {
        "name": "test",
        "seed": seed,
        "cloud": {"cpu": 1.0, "batching": {"max_batch": 8, "max_wait_ms": max_wait_ms}},
        "edges": [{"name": "e", "count": edges, "cpu": 1.0, "policy": policy, "link": link}],
        "workload": {"requests_per_edge": requests, "max_new_tokens": tokens},
    }
    if wan:
        scenario["wan"] = wan
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path, profile


OVERRIDES = {f.name for f in dataclasses.fields(Overrides)}


def simulate(scenario: Path, profile: Path, **options: Any) -> list[dict[str, Any]]:
    """The scenario simulated, with changes to it (``Overrides``' fields) and options."""
    changes = Overrides(**{k: v for k, v in options.items() if k in OVERRIDES})
    rest = {k: v for k, v in options.items() if k not in OVERRIDES}
    log = EventLog(None, "sim", keep=True)
    Simulation(
        load_scenario(scenario, changes), log, SimOptions(profile=str(profile), **rest)
    ).run()
    return log.events


def rounds_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "round"]


def test_tokens_per_round_match_the_closed_form(tmp_path) -> None:
    alpha, gamma = 0.7, 4
    scenario, profile = write_scenario(
        tmp_path, {"constant": {"delay_ms": 5}}, requests=40, tokens=200, alpha=alpha
    )
    full = [r for r in rounds_of(simulate(scenario, profile)) if r["gamma"] == gamma]
    emitted = np.array([r["emitted"] for r in full], dtype=float)
    expected = (1 - alpha ** (gamma + 1)) / (1 - alpha)
    # emitted = 1 + accepted, P(accepted >= k) = alpha^k: its exact variance
    probabilities = [alpha**k * (1 - alpha) for k in range(gamma)] + [alpha**gamma]
    variance = sum(p * (k + 1 - expected) ** 2 for k, p in enumerate(probabilities))
    assert len(full) > 1500
    assert abs(emitted.mean() - expected) < 4 * math.sqrt(variance / len(full))
    accepted = sum(r["accepted"] for r in full) / sum(r["drafted"] for r in full)
    assert accepted == pytest.approx((expected - 1) / gamma, abs=0.03)


def test_round_time_is_drafting_plus_round_trip_plus_verify(tmp_path) -> None:
    delay, step, verify, gamma = 12.0, 7.0, 40.0, 3
    scenario, profile = write_scenario(
        tmp_path,
        {"constant": {"delay_ms": delay}},
        policy=f"fixed:{gamma}",
        tokens=60,
        step_ms=step,
        verify=verify,
    )
    rounds = [r for r in rounds_of(simulate(scenario, profile)) if r["gamma"] == gamma]
    assert len(rounds) > 5
    for r in rounds:
        assert (r["t_recv"] - r["t_send"]) * 1000 == pytest.approx(2 * delay + verify)
        assert r["draft_ms"] == pytest.approx(gamma * step)
        assert r["batch_size"] == 1 and r["queue_ms"] == 0.0
    starts = [r["t_send"] * 1000 - r["draft_ms"] for r in rounds]
    periods = np.diff(starts)
    assert periods == pytest.approx(gamma * step + 2 * delay + verify)


def test_serialisation_adds_bytes_over_rate(tmp_path) -> None:
    delay, verify, rate = 5.0, 40.0, 0.5
    scenario, profile = write_scenario(
        tmp_path, {"constant": {"delay_ms": delay, "rate_mbps": rate}}, verify=verify
    )
    up, down = wire_bytes(69 + 4 * 4)[0], wire_bytes(152)[0]
    expected = 2 * delay + verify + (up + down) * 8 / (rate * 1000)
    rounds = [r for r in rounds_of(simulate(scenario, profile)) if r["gamma"] == 4]
    assert [(r["t_recv"] - r["t_send"]) * 1000 for r in rounds] == pytest.approx(
        [expected] * len(rounds)
    )


def test_same_seed_same_run_and_another_seed_another(tmp_path) -> None:
    link = {"trace": str(ROOT / "traces" / "lte-like.csv")}
    scenario, profile = write_scenario(tmp_path, link, edges=3, requests=2, tokens=40)
    first, second = simulate(scenario, profile), simulate(scenario, profile)
    assert first == second
    assert simulate(scenario, profile, seed=99) != first


def test_round_trips_follow_the_trace_delay(tmp_path) -> None:
    trace = tmp_path / "step.csv"
    nan = np.full(2, np.nan)
    delays = np.array([10.0, 100.0])
    series = {"rate_mbps": nan, "delay_ms": delays, "jitter_ms": nan, "loss_pct": nan}
    write_trace(LinkTrace(np.array([0.0, 2.0]), 1000.0, series, dict(series)), trace)
    scenario, profile = write_scenario(tmp_path, {"trace": str(trace)}, tokens=120, verify=30.0)
    rounds = rounds_of(simulate(scenario, profile))
    early = [r for r in rounds if r["t_recv"] < 1.9]
    late = [r for r in rounds if r["t_send"] > 2.1]
    assert early and late
    assert all((r["t_recv"] - r["t_send"]) * 1000 == pytest.approx(50.0) for r in early)
    assert all((r["t_recv"] - r["t_send"]) * 1000 == pytest.approx(230.0) for r in late)


def test_synchronised_edges_are_verified_in_one_batch(tmp_path) -> None:
    def verify(batch: int, tokens: int, context: int) -> float:
        return 20.0 + 10.0 * batch + tokens

    scenario, profile = write_scenario(
        tmp_path,
        {"constant": {"delay_ms": 5}},
        edges=4,
        alpha=1.0,
        verify=verify,
        tokens=41,
        max_wait_ms=1000.0,  # the server waits until every active session has a verify in
    )
    events = simulate(scenario, profile)
    batches = [e for e in events if e["event"] == "batch"]
    assert all(b["batch_size"] == 4 for b in batches)
    assert all(b["verify_ms"] == pytest.approx(verify(4, 5, 0)) for b in batches)
    assert {r["batch_size"] for r in rounds_of(events)} == {4}


def test_the_batching_policy_waits_for_stragglers(tmp_path) -> None:
    """One edge far away: the near one's verify waits max_wait_ms for company, then runs."""
    near, far = {"constant": {"delay_ms": 1}}, {"constant": {"delay_ms": 400}}
    scenario, profile = write_scenario(tmp_path, near, edges=1, max_wait_ms=30.0)
    raw = yaml.safe_load(scenario.read_text())
    raw["edges"].append({**raw["edges"][0], "name": "f", "link": far})
    scenario.write_text(yaml.safe_dump(raw))
    rounds = rounds_of(simulate(scenario, profile))
    waits = [r["queue_ms"] for r in rounds if r["edge"] == "e1" and r["batch_size"] == 1]
    assert waits and max(waits) == pytest.approx(30.0)


def test_requests_end_at_their_token_budget(tmp_path) -> None:
    scenario, profile = write_scenario(
        tmp_path, {"constant": {"delay_ms": 2}}, requests=5, tokens=37, alpha=0.9
    )
    events = simulate(scenario, profile)
    requests = [e for e in events if e["event"] == "request"]
    assert [r["output_tokens"] for r in requests] == [37] * 5
    per_session = defaultdict(int)
    for r in rounds_of(events):
        per_session[r["session"]] += r["emitted"]
        assert r["emitted"] <= r["accepted"] + 1
    assert set(per_session.values()) == {36}  # the first token comes from the prefill


class Scripted:
    """A test policy whose γ depends on what it last observed, to check the feed."""

    name = "scripted"
    asks_server = False

    def __init__(self) -> None:
        self.last: RoundObservation | None = None

    def next_gamma(self, context_len: int) -> int:
        if self.last is None:
            return 3
        return 1 + (self.last.accepted + int(self.last.round_trip_ms) + context_len) % 6

    def observe(self, observation: RoundObservation) -> None:
        self.last = observation


def assert_policy_replays(events: list[dict[str, Any]], max_tokens: int) -> int:
    """A fresh policy, fed each edge's round records in order through the shared
    ``observation_from_round``, chooses exactly the γ that was logged; returns rounds."""
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rounds_of(events):
        by_session[r["session"]].append(r)
    checked = 0
    policies: dict[str, Scripted] = defaultdict(Scripted)
    for session in sorted(by_session, key=lambda s: by_session[s][0]["t_send"]):
        rounds = by_session[session]
        policy = policies[rounds[0]["edge"]]
        produced = 1
        for r in rounds:
            choice = policy.next_gamma(r["context_len"] - r["emitted"])
            assert r["gamma"] == max(0, min(choice, max_tokens - produced - 1))
            policy.observe(observation_from_round(r))
            produced += r["emitted"]
            checked += 1
    return checked


def test_the_simulator_feeds_policies_what_the_client_feeds_them(tmp_path) -> None:
    scenario, profile = write_scenario(
        tmp_path, {"trace": str(ROOT / "traces" / "wifi-like.csv")}, edges=2, tokens=50
    )
    log = EventLog(None, "sim", keep=True)
    scripted = load_scenario(scenario, Overrides(requests_per_edge=2))
    Simulation(scripted, log, SimOptions(profile=str(profile)), lambda _: Scripted()).run()
    assert assert_policy_replays(log.events, 50) > 20
    assert len({r["gamma"] for r in rounds_of(log.events)}) > 3


def test_the_runtime_feeds_policies_the_same_way(tiny_target, tiny_draft, start_server) -> None:
    from runtime.draft import EdgeClient, EdgeSettings

    server = start_server(tiny_target)
    log = EventLog(None, "edge0", keep=True)
    client = EdgeClient(server.endpoint, tiny_draft, EdgeSettings("edge0", Scripted(), log=log))
    try:
        for text in ("first prompt", "a second one"):
            client.request(tiny_draft.encode_prompt(text), 40)
    finally:
        client.close()
    assert assert_policy_replays(log.events, 40) > 10


def test_links_serialise_in_fifo_order_and_wait_out_outages() -> None:
    up = {
        "rate_mbps": np.array([0.0, 1.0]),
        "delay_ms": np.array([5.0, 5.0]),
        "jitter_ms": np.zeros(2),
        "loss_pct": np.zeros(2),
    }
    trace = LinkTrace(np.array([0.0, 1.0]), 10.0, up, dict(up))
    link = SimLink(LinkSchedule(trace, "up"), 100, random.Random(1), shared=True)
    wire = wire_bytes(1000)[0]
    first, _ = link.transit(1000, 0.0)
    second, _ = link.transit(1000, 0.0)
    tx = wire * 8 / 1000.0
    assert first == pytest.approx(1000.0 + tx + 5.0)  # held until the outage ends at 1 s
    assert second == pytest.approx(1000.0 + 2 * tx + 5.0)


def test_an_outage_in_a_later_cycle_of_a_looped_trace_ends() -> None:
    """Piece starts in 0.1 s steps are not exact in binary: in the trace's second cycle a
    time could land a hair past the piece found for it, and a message sent into an outage
    there was once declared stranded for ever."""
    pieces = 1250
    rates = np.full(pieces, 5.0)
    rates[40:50] = 0.0
    up = {
        "rate_mbps": rates,
        "delay_ms": np.full(pieces, 10.0),
        "jitter_ms": np.zeros(pieces),
        "loss_pct": np.zeros(pieces),
    }
    trace = LinkTrace(np.arange(pieces) * 0.1, pieces * 0.1 + 0.002, up, dict(up))
    link = SimLink(LinkSchedule(trace, "up"), 100, random.Random(1))
    period = trace.duration_s * 1000.0
    exit_ms, through = link.transit(100, period + 4197.3)
    assert through
    assert period + 5000.0 < exit_ms < period + 5000.0 + 11.0
    assert not link.counters["stranded"]


def test_a_full_shared_queue_drops_and_the_sender_retries() -> None:
    up = {
        "rate_mbps": np.array([1.0]),
        "delay_ms": np.array([1.0]),
        "jitter_ms": np.zeros(1),
        "loss_pct": np.zeros(1),
    }
    trace = LinkTrace(np.array([0.0]), 100.0, up, dict(up))
    link = SimLink(LinkSchedule(trace, "up"), 2, random.Random(1), shared=True)
    results = [link.transit(100, 0.0) for _ in range(4)]
    assert [through for _, through in results] == [True, True, False, False]
    retry = results[2][0]
    assert 203.0 <= retry <= 1.25 * 203.0  # 200 ms + 1.5 x RTT, up to 25 % more
    assert link.counters["queue_drops"] == 2


def test_losses_cost_retransmission_timeouts_on_access_links(tmp_path) -> None:
    scenario, profile = write_scenario(
        tmp_path, {"constant": {"delay_ms": 10, "loss_pct": 20}}, tokens=120, verify=30.0
    )
    trips = [(r["t_recv"] - r["t_send"]) * 1000 for r in rounds_of(simulate(scenario, profile))]
    clean = [t for t in trips if t == pytest.approx(50.0)]
    slow = [t for t in trips if t > 200.0]
    assert len(clean) + len(slow) == len(trips)
    # a round is clean when neither message is lost: 0.8^2
    assert len(clean) / len(trips) == pytest.approx(0.64, abs=0.2)


def test_profile_interpolation_is_exact_on_the_grid_and_linear_between() -> None:
    profile = PairProfile(synthetic_profile(verify=lambda b, t, c: b * 100 + t * 10 + c), "s")
    assert profile.verify_ms(4, 5, 256) == pytest.approx(4 * 100 + 5 * 10 + 256)
    assert profile.verify_ms(3, 4, 300) == pytest.approx(3 * 100 + 4 * 10 + 300)
    assert profile.verify_ms(16, 9, 512) == pytest.approx(16 * 100 + 9 * 10 + 512)  # beyond


def test_a_missing_profile_says_how_to_make_one(tmp_path) -> None:
    with pytest.raises(CalibrationError, match=r"profile_models\.py --target big --draft int8"):
        reference_profile("big", "int8", tmp_path)


def test_the_committed_default_profile_loads() -> None:
    profile = reference_profile("smollm2", "int8")
    assert 0 < profile.acceptance[0] < 1
    assert profile.verify_ms(8, 9, 512) > profile.verify_ms(1, 1, 64) > 0


def test_the_engine_runs_events_in_time_then_schedule_order() -> None:
    engine, seen = Engine(), []
    for name, at in (("b", 2.0), ("a", 1.0), ("c", 2.0)):
        engine.at(at, seen.append, name)
    engine.run()
    assert seen == ["a", "b", "c"] and engine.events == 3


def test_a_prompt_the_profile_measured_gets_its_own_acceptance() -> None:
    data = synthetic_profile(alpha=0.8)
    data["acceptance"]["per_prompt"] = {
        "hard prompt": {"reached": [90] * 8, "accepted": [9] * 8},
    }
    profile = PairProfile(data, "s")
    hard = profile.acceptance_table("hard prompt")
    assert hard[0] == pytest.approx((9 + 10 * 0.8) / (90 + 10))  # its counts, shrunk a little
    assert profile.acceptance_table("never profiled")[:8] == [0.8] * 8
    rng = random.Random(5)
    draws = [min(sample_run(hard, 32, rng), 4) for _ in range(4000)]
    assert np.mean(draws) == pytest.approx(sum(hard[0] ** k for k in range(1, 5)), abs=0.02)


def test_recorded_greedy_matches_fix_every_round_for_any_window(tmp_path) -> None:
    """Under greedy verification a prompt's output is the target's whatever γ is, so the
    profile's recorded matches decide each round; past them the runs are drawn."""
    scenario, profile = write_scenario(tmp_path, {"constant": {"delay_ms": 5}}, tokens=30)
    data = json.loads(profile.read_text())
    matches = "0" + "11011100" + "1111111" + "0000"  # 20 positions recorded
    prompt = load_scenario(scenario).workload.prompts[0]
    data["acceptance"]["per_prompt"] = {
        prompt: {"reached": [1] * 8, "accepted": [1] * 8, "matches": matches}
    }
    profile.write_text(json.dumps(data))
    # γ = 4 from position 1: 1-2 then the correction at 3; 4-6, correction 7; 8 wrong;
    # 9-12, bonus 13; 14-15, correction 16; 17, 18, 19 wrong; past 20: drawn
    accepted = [r["accepted"] for r in rounds_of(simulate(scenario, profile))]
    assert accepted[:8] == [2, 3, 0, 4, 2, 0, 0, 0]
    # γ = 2: 1-2, bonus 3; 4-5, bonus 6; 7 and 8 wrong; 9-10, bonus 11; 12-13, bonus 14;
    # 15, correction 16
    scenario, _ = write_scenario(
        tmp_path, {"constant": {"delay_ms": 5}}, tokens=30, policy="fixed:2"
    )
    profile.write_text(json.dumps(data))
    accepted = [r["accepted"] for r in rounds_of(simulate(scenario, profile))]
    assert accepted[:7] == [2, 2, 0, 0, 2, 2, 1]


def test_after_a_fully_accepted_round_the_first_token_follows_the_two_token_matches(
    tmp_path,
) -> None:
    """The draft fed two tokens in one forward (after a whole round was accepted) predicts
    otherwise at some positions: the profile records those matches apart."""
    scenario, profile = write_scenario(
        tmp_path, {"constant": {"delay_ms": 5}}, tokens=30, policy="fixed:2"
    )
    data = json.loads(profile.read_text())
    prompt = load_scenario(scenario).workload.prompts[0]
    data["acceptance"]["per_prompt"] = {
        prompt: {
            "reached": [1] * 8,
            "accepted": [1] * 8,
            "matches": "0" + "1" * 25,
            "matches_after_accept": "0" + "1" * 3 + "0" + "1" * 21,  # position 4 flips
        }
    }
    profile.write_text(json.dumps(data))
    # γ = 2: 1-2 accepted, bonus 3; then position 4 is a first token after a full accept:
    # rejected, correction 4; 5-6 accepted (one-token matches), bonus 7; 8-9, bonus 10; ...
    accepted = [r["accepted"] for r in rounds_of(simulate(scenario, profile))]
    assert accepted[:4] == [2, 0, 2, 2]
    del data["acceptance"]["per_prompt"][prompt]["matches_after_accept"]  # a version-2 profile
    profile.write_text(json.dumps(data))
    assert [r["accepted"] for r in rounds_of(simulate(scenario, profile))][:4] == [2, 2, 2, 2]


def test_a_batch_deadline_timer_always_finds_its_request_due(tmp_path) -> None:
    """Rounding once left the oldest request a hair short of max_wait at its own timer,
    which then re-armed itself for the same instant forever."""
    scenario, profile = write_scenario(tmp_path, {"constant": {"delay_ms": 5}}, edges=2)
    simulation = Simulation(
        load_scenario(scenario), EventLog(None, "sim"), SimOptions(profile=str(profile))
    )
    server = simulation.server
    server.active = 2
    simulation.engine.now = 2025.7299390566782
    server.pending.append(Verify(simulation.edges[0], 4, 2, 2005.7299390566783))
    server.sessions[simulation.edges[0]] = Session(40, 20)
    server._work()
    assert server.busy and not server.pending  # dispatched, no timer for "now"


def test_every_policy_meets_the_same_acceptance_runs_and_the_oracle_drafts_exactly_them(
    tmp_path,
) -> None:
    """Runs are drawn before γ and independently of it (common random numbers): a window
    longer than any run accepts exactly the run, and the oracle, told the run, drafts it."""
    scenario, profile = write_scenario(
        tmp_path, {"constant": {"delay_ms": 5}}, requests=2, tokens=400, alpha=0.75
    )
    wide = rounds_of(simulate(scenario, profile, policy="fixed:16"))
    oracle = rounds_of(simulate(scenario, profile, policy="oracle"))
    uncapped = [r for r in wide if r["accepted"] < 16]
    assert len(uncapped) > 100
    assert [r["accepted"] for r in wide] == [r["gamma"] for r in oracle][: len(wide)]
    assert all(r["accepted"] == r["gamma"] for r in oracle)
    assert len({r["gamma"] for r in oracle}) > 4


def test_the_oracle_bounds_the_fixed_windows_from_above(tmp_path) -> None:
    scenario, profile = write_scenario(
        tmp_path, {"constant": {"delay_ms": 40}}, requests=2, tokens=200, alpha=0.7
    )
    throughput = {
        policy: summarise(simulate(scenario, profile, policy=policy))["throughput_tok_s"]
        for policy in ("oracle", "fixed:1", "fixed:3", "fixed:6")
    }
    assert throughput["oracle"] > max(v for k, v in throughput.items() if k != "oracle")


def test_the_oracle_is_only_offered_by_the_simulator() -> None:
    from runtime.policies import make_window_policy

    assert simulated_window_policy("oracle").name == "oracle"
    assert simulated_window_policy("awc").name == "awc-latency"
    with pytest.raises(ValueError, match="unknown window policy"):
        make_window_policy("oracle")


def test_a_cpu_quota_runs_at_full_speed_until_the_period_s_share_is_spent() -> None:
    quota = CpuQuota(0.3, phase_ms=0.0)  # 30 ms of every 100 ms period
    assert quota.finish(0.0, 20.0) == pytest.approx(20.0)
    # 10 ms of this period's quota are left: then the next period's 30, then 10 more
    assert quota.finish(25.0, 50.0) == pytest.approx(210.0)
    # a fresh period: 67 ms need three periods' quotas, not 67 / 0.3
    assert CpuQuota(0.3, phase_ms=0.0).finish(0.0, 67.0) == pytest.approx(207.0)
    # crossing a period boundary with quota to spare costs nothing
    assert CpuQuota(0.7, phase_ms=0.0).finish(90.0, 30.0) == pytest.approx(120.0)
    # over a long computation the share is what counts
    assert CpuQuota(0.3, phase_ms=37.0).finish(5.0, 9000.0) == pytest.approx(30000, rel=0.01)
    unlimited = CpuQuota(1.0, phase_ms=50.0)
    assert unlimited.unlimited and unlimited.finish(3.0, 500.0) == 503.0


def compute_at(
    engine: Engine, at: float, host: CoreShare, work_ms: float, name: str, done: dict
) -> None:
    """``work_ms`` on ``host`` from ``at``; its end goes in ``done[name]``."""
    engine.at(at, lambda _: host.compute(work_ms, lambda n: done.setdefault(n, engine.now), name))


def test_edges_pinned_to_one_core_share_it_and_each_spends_its_own_quota() -> None:
    engine = Engine()
    core = SharedCore(engine)
    a, b = core.host(1.0, phase_ms=0.0), core.host(0.3, phase_ms=0.0)
    done: dict[str, float] = {}
    compute_at(engine, 0.0, a, 60.0, "a", done)
    compute_at(engine, 0.0, b, 60.0, "b", done)
    engine.run()
    # both at half speed until b's 30 ms quota is spent (t = 60); a then finishes alone;
    # b waits for its next period and runs its last 30 ms alone
    assert done == {"a": pytest.approx(90.0), "b": pytest.approx(130.0)}
    c = core.host(0.3, phase_ms=50.0)
    compute_at(engine, 200.0, c, 20.0, "c", done)
    engine.run()
    assert done["c"] == pytest.approx(220.0)  # alone on the core: full speed


def test_a_simulation_of_an_emulation_shares_the_core_its_edges_were_pinned_to(tmp_path) -> None:
    scenario, profile = write_scenario(tmp_path, {"constant": {"delay_ms": 5}}, edges=3)
    plans = {"shared": {"cloud": "1", "e1": "0", "e2": "0", "e3": "0"}, "apart": None}
    draft_ms = {}
    for name, plan in plans.items():
        log = EventLog(None, "sim", keep=True)
        options = SimOptions(profile=str(profile), cpu_plan=plan)
        simulation = Simulation(load_scenario(scenario), log, options)
        kinds = {type(edge.cpu) for edge in simulation.edges}
        assert kinds == ({CoreShare} if plan else {CpuQuota})
        assert len(simulation.cores) == (1 if plan else 0)
        simulation.run()
        draft_ms[name] = np.mean([r["draft_ms"] for r in rounds_of(log.events)])
    # three drafters at once on one core: each at a third of the speed
    assert draft_ms["shared"] > 1.5 * draft_ms["apart"]


def test_emulated_edges_are_devices_of_their_own_at_their_given_speed(tmp_path) -> None:
    """``draft: replay`` edges compute nothing in the emulator: the simulation gives each
    its own quota even where they were pinned together, slows nothing beside them, and
    prices their drafts at the group's speed, not a probe's."""
    scenario, profile = write_scenario(tmp_path, {"constant": {"delay_ms": 5}}, edges=3)
    measured = json.loads(profile.read_text())
    slower = {"ratio": 1.3, "resolved": True}
    measured["interference"] = {"target": {"verify": slower}, "draft": {"step": slower}}
    profile.write_text(json.dumps(measured))
    raw = yaml.safe_load(scenario.read_text())
    plan = {"cloud": "1", "e1": "0", "e2": "0", "e3": "0"}
    probes = [
        {
            "event": "speed",
            "proc": "e1",
            "role": "draft",
            "context": 64,
            "gamma": 4,
            "ms": 1000.0,
            "at": "start",
        }
    ]
    draft_ms = {}
    for speed in (1.0, 2.0):
        raw["edges"][0].update(draft="replay:int8", speed=speed)
        scenario.write_text(yaml.safe_dump(raw))
        log = EventLog(None, "sim", keep=True)
        options = SimOptions(profile=str(profile), cpu_plan=plan, speed_probes=probes)
        simulation = Simulation(load_scenario(scenario), log, options)
        assert {type(edge.cpu) for edge in simulation.edges} == {CpuQuota}
        assert not simulation.cores and not simulation.server.beside
        assert not any(edge.beside for edge in simulation.edges)
        assert {edge.speed for edge in simulation.edges} == {speed}
        simulation.run()
        draft_ms[speed] = np.mean([r["draft_ms"] for r in rounds_of(log.events)])
    assert draft_ms[2.0] == pytest.approx(2 * draft_ms[1.0], rel=0.01)


def test_an_edge_on_a_shared_core_computes_slower_while_the_target_computes() -> None:
    """Cross-core interference: the core's progress is re-planned when the target starts
    and stops, and the computation's CPU time counts the slower part."""
    engine = Engine()
    core = SharedCore(engine)
    edge = core.host(1.0, phase_ms=0.0)
    done: dict[str, float] = {}

    def finished(name: str) -> None:
        done[name] = engine.now

    engine.at(0.0, lambda _: core.set_target_busy(True))
    engine.at(0.0, lambda _: edge.compute(60.0, finished, "a", 1.5))
    engine.at(30.0, lambda _: core.set_target_busy(False))
    engine.run()
    # 30 ms beside the target do 20 ms of the work; the other 40 alone
    assert done == {"a": pytest.approx(70.0)}
    assert edge.spent_ms == pytest.approx(70.0)
    engine.at(100.0, lambda _: edge.compute(60.0, finished, "b", 1.5))
    engine.run()
    assert done["b"] == pytest.approx(160.0)  # the target idle: the ratio does not apply


def test_a_simulation_of_an_emulation_prices_cross_core_interference(tmp_path) -> None:
    """With the target and the edges pinned to different CPUs of one machine, each op that
    overlaps the other role's computing costs the profile's interference ratio; a simulation
    of devices of their own (no CPU plan), profiles without the ratios and hosts whose speed
    a watch probed (beside the other role already) are unaffected."""
    scenario, profile_path = write_scenario(tmp_path, {"constant": {"delay_ms": 5}}, edges=3)
    data = json.loads(profile_path.read_text())
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(data))
    data["interference"] = {  # a ratio not resolved from the machine's noise is not used
        "neighbour_cpu": 0,
        "target": {"beside": "draft work", "verify": {"ratio": 1.5, "resolved": True}},
        "draft": {
            "beside": "target work",
            "step": {"ratio": 1.25, "resolved": True},
            "prefill": {"ratio": 3.0, "resolved": False},
        },
    }
    profile_path.write_text(json.dumps(data))
    plan = {"cloud": "1", "e1": "0", "e2": "0", "e3": "0"}
    profile = PairProfile(data, "s")
    # watches' probes, at the grid's own prices: taken beside the other role, they hold it
    watch = {"target": {"batch": 1, "tokens": 5}, "draft": {"gamma": 4}}
    probes = [
        {"event": "speed", "proc": f"watch-cpu{cpu}", "role": role, "at": "during", "context": 64}
        | watch[role]
        for cpu, role in (("1", "target"), ("0", "draft"))
        for _ in range(3)
    ]
    for probe in probes:
        probe["ms"] = grid_ms(profile, probe)
    runs = {}
    for name, path, cpus, watched in (
        ("coupled", profile_path, plan, []),
        ("no ratios", plain, plan, []),
        ("own devices", profile_path, None, []),
        ("watched", profile_path, plan, probes),
    ):
        log = EventLog(None, "sim", keep=True)
        options = SimOptions(profile=str(path), cpu_plan=cpus, speed_probes=watched)
        Simulation(load_scenario(scenario), log, options).run()
        runs[name] = rounds_of(log.events)
    expected = {"target": {"verify": 1.5}, "draft": {"step": 1.25}}
    assert PairProfile(data, "s").interference == expected
    verify = {name: [r["verify_ms"] for r in rounds] for name, rounds in runs.items()}
    cpu = {name: [r["draft_cpu_ms"] for r in rounds] for name, rounds in runs.items()}
    assert verify["no ratios"] == verify["own devices"] == pytest.approx(verify["watched"])
    assert cpu["watched"] == pytest.approx(cpu["no ratios"])
    # three edges keep their core busy most of the time: most verifications cost 1.5x
    slowed = [c / p for c, p in zip(verify["coupled"], verify["no ratios"], strict=False)]
    assert max(slowed) == pytest.approx(1.5) and min(slowed) >= 1.0 - 1e-9
    assert np.mean(cpu["coupled"]) > np.mean(cpu["no ratios"])
    assert max(cpu["coupled"]) <= 1.25 * max(cpu["no ratios"]) + 1e-6


def test_drafts_taking_turns_on_a_core_need_the_profiled_time_sharing_cost() -> None:
    """Two at once each progress at half the core over the ratio for two; alone again, at
    full speed; the CPU time each spent counts the turns' cost."""
    engine = Engine()
    core = SharedCore(engine, sharing={1: 1.0, 2: 1.25}.__getitem__)
    a, b = core.host(1.0, phase_ms=0.0), core.host(1.0, phase_ms=0.0)
    done: dict[str, float] = {}
    compute_at(engine, 0.0, a, 50.0, "a", done)
    compute_at(engine, 0.0, b, 100.0, "b", done)
    engine.run()
    # together: 50 ms of work each take 50 x 2 x 1.25 = 125 ms; b's last 50 then alone
    assert done == {"a": pytest.approx(125.0), "b": pytest.approx(175.0)}
    assert a.spent_ms == pytest.approx(62.5) and b.spent_ms == pytest.approx(112.5)


def test_a_profile_s_time_sharing_ratios_are_read_where_resolved_and_extended() -> None:
    data = synthetic_profile()
    assert PairProfile(data, "s").sharing_ratio(3) == 1.0  # profiles before version 6
    data["time_sharing"] = {
        "cpu": 1,
        "alternations": 5,
        "sharers": {
            "2": {"ratio": 1.1, "resolved": True},
            "3": {"ratio": 1.2, "resolved": True},
        },
    }
    profile = PairProfile(data, "s")
    assert profile.time_sharing == {2: 1.1, 3: 1.2}
    assert profile.sharing_ratio(1) == 1.0 and profile.sharing_ratio(0) == 1.0
    assert profile.sharing_ratio(2) == pytest.approx(1.1)
    assert profile.sharing_ratio(4) == pytest.approx(1.3)  # past the profiled counts
    data["time_sharing"]["sharers"]["2"]["resolved"] = False  # the machine's noise: not used
    assert PairProfile(data, "s").sharing_ratio(2) == pytest.approx(1.1)  # between 1 and 3
    assert profile.target_sharing_ratio(2) == 1.0  # profiles before version 9
    data["target_time_sharing"] = {"sharers": {"2": {"ratio": 1.15, "resolved": True}}}
    replicas = PairProfile(data, "s")
    assert replicas.target_time_sharing == {2: 1.15}
    assert replicas.target_sharing_ratio(1) == 1.0
    assert replicas.target_sharing_ratio(3) == pytest.approx(1.3)


def test_a_simulation_of_edges_sharing_a_core_prices_their_turns(tmp_path) -> None:
    """Three edges on one core draft slower with the profile's time-sharing ratios than
    without; an edge alone on its CPU is unaffected."""
    scenario, profile_path = write_scenario(tmp_path, {"constant": {"delay_ms": 5}}, edges=3)
    data = json.loads(profile_path.read_text())
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(data))
    data["time_sharing"] = {
        "sharers": {"2": {"ratio": 1.5, "resolved": True}, "3": {"ratio": 2.0, "resolved": True}}
    }
    profile_path.write_text(json.dumps(data))
    cpu: dict[tuple[str, str], float] = {}
    for plan_name, plan in (
        ("shared", {"cloud": "1", "e1": "0", "e2": "0", "e3": "0"}),
        ("apart", None),
    ):
        for name, path in (("ratios", profile_path), ("none", plain)):
            log = EventLog(None, "sim", keep=True)
            options = SimOptions(profile=str(path), cpu_plan=plan)
            Simulation(load_scenario(scenario), log, options).run()
            cpu[plan_name, name] = np.mean([r["draft_cpu_ms"] for r in rounds_of(log.events)])
    assert cpu["shared", "ratios"] > 1.3 * cpu["shared", "none"]
    assert cpu["shared", "ratios"] <= 2.0 * cpu["shared", "none"] + 1e-6
    assert cpu["apart", "ratios"] == pytest.approx(cpu["apart", "none"])


def test_a_simulation_of_an_emulated_run_computes_at_the_speed_its_hosts_probed(tmp_path) -> None:
    """Each host's probes (before and after its workload, averaged) over the grid's price of
    the op they timed scale its compute."""
    scenario, profile_path = write_scenario(tmp_path, {"constant": {"delay_ms": 5}})
    profile = PairProfile(json.loads(profile_path.read_text()), "s")
    draft_op, verify_op = profile.draft_ms(4, 64), profile.verify_ms(1, 5, 64)
    probes = [
        {"proc": "e1", "role": "draft", "context": 64, "gamma": 4, "at": "start"},
        {"proc": "target", "role": "target", "context": 64, "batch": 1, "tokens": 5},
        {"proc": "e1", "role": "draft", "context": 64, "gamma": 4, "at": "end"},
    ]
    for probe, ms in zip(probes, (1.8 * draft_op, 1.5 * verify_op, 2.2 * draft_op), strict=True):
        probe.update(event="speed", ms=ms)
    runs = {}
    for name, options in (("probed", {"speed_probes": probes}), ("profiled", {})):
        log = EventLog(None, "sim", keep=True)
        simulation = Simulation(
            load_scenario(scenario), log, SimOptions(profile=str(profile_path), **options)
        )
        simulation.run()
        runs[name] = (simulation.speeds, rounds_of(log.events)[0])
    assert runs["probed"][0] == {"e1": pytest.approx(2.0), "cloud": pytest.approx(1.5)}
    assert runs["profiled"][0] == {}
    probed, profiled = runs["probed"][1], runs["profiled"][1]
    assert probed["draft_ms"] == pytest.approx(2.0 * profiled["draft_ms"])
    assert probed["verify_ms"] == pytest.approx(1.5 * profiled["verify_ms"])


def target_probes(ms: float, **fields: Any) -> list[dict[str, Any]]:
    """The target's own two speed probes (before and after the workload) of a 1x5
    verification at context 64 taking ``ms``, with ``fields`` besides."""
    probe = {"event": "speed", "proc": "target", "role": "target", "context": 64, "batch": 1}
    return [{**probe, "tokens": 5, "ms": ms, "at": at, **fields} for at in ("start", "end")]


def test_the_target_s_verifications_are_scaled_by_the_speed_probed_at_their_width(
    tmp_path,
) -> None:
    """Verifications of other row widths drift apart: the target's probes at widths 1, 3
    and 5 scale each batch by the ratio at its width (interpolated between them)."""
    scenario, profile_path = write_scenario(
        tmp_path, {"constant": {"delay_ms": 5}}, policy="fixed:1", tokens=12
    )
    profile = PairProfile(json.loads(profile_path.read_text()), "s")
    # twice as slow at one token as the grid prices it, as priced at three and five
    by_tokens = {
        str(w): factor * profile.verify_ms(1, w, 64) for w, factor in ((1, 2.0), (3, 1.0), (5, 1.0))
    }
    probes = target_probes(by_tokens["5"], by_tokens=by_tokens)
    assert probed_verify_speeds(probes, profile) == {1: pytest.approx({1: 2.0, 3: 1.0, 5: 1.0})}
    scaled = rounds_of(simulate(scenario, profile_path, speed_probes=probes))[0]
    unscaled = rounds_of(simulate(scenario, profile_path))[0]
    assert scaled["gamma"] == 1  # rows of two tokens: halfway between widths 1 and 3
    assert scaled["verify_ms"] == pytest.approx(1.5 * unscaled["verify_ms"])


def test_the_target_s_verifications_are_scaled_by_the_speed_probed_at_their_batch_size(
    tmp_path,
) -> None:
    """Rows of a batch drift apart from one row: probed at the grid's price with one row and
    at three times it with four, a batch of two rows is scaled by the ratio between."""
    scenario, profile_path = write_scenario(
        tmp_path, {"constant": {"delay_ms": 5}}, edges=2, alpha=1.0, tokens=11, max_wait_ms=1e3
    )
    profile = PairProfile(json.loads(profile_path.read_text()), "s")
    by_tokens = {str(w): profile.verify_ms(1, w, 64) for w in (1, 5)}
    rows = {str(w): 3.0 * profile.verify_ms(4, w, 64) for w in (1, 5)}
    probes = target_probes(
        by_tokens["5"], by_tokens=by_tokens, batched={"batch": 4, "by_tokens": rows}
    )
    speeds = probed_verify_speeds(probes, profile)
    assert speeds == {1: pytest.approx({1: 1.0, 5: 1.0}), 4: pytest.approx({1: 3.0, 5: 3.0})}

    def batches(**options: Any) -> list[dict[str, Any]]:
        events = simulate(scenario, profile_path, **options)
        return [e for e in events if e["event"] == "batch"]

    scaled, unscaled = batches(speed_probes=probes), batches()
    assert {b["batch_size"] for b in scaled} == {2} and len(scaled) == len(unscaled)
    for probed, plain in zip(scaled, unscaled, strict=True):
        assert probed["verify_ms"] == pytest.approx((1 + 2 * 1 / 3) * plain["verify_ms"])


def two_row_batch_ms(events: list[dict[str, Any]]) -> list[float]:
    return [e["verify_ms"] for e in events if e["event"] == "batch" and e["batch_size"] == 2]


def test_a_batch_of_rows_of_unequal_lengths_costs_what_the_probes_measured_beside_equal_rows(
    tmp_path,
) -> None:
    """The server left-pads rows whose caches differ in length: where the target's probes
    timed such rows at 1.25x equal ones, a batch of two edges' rows is priced 1.25x once
    their contexts part (each accepts its own draws), and as before while they are equal
    (the same prompt, and every draft accepted)."""
    ratios = {}
    for alpha in (1.0, 0.5):
        scenario, profile_path = write_scenario(
            tmp_path, {"constant": {"delay_ms": 5}}, edges=2, alpha=alpha, max_wait_ms=1e3
        )
        profile = PairProfile(json.loads(profile_path.read_text()), "s")
        assert profile.unequal_rows == 1.0  # a profile without the measurement prices none
        rows = {str(w): profile.verify_ms(4, w, 64) for w in (1, 5)}
        batched = {"batch": 4, "by_tokens": rows}
        unequal = {**batched, "unequal_by_tokens": {w: 1.25 * ms for w, ms in rows.items()}}
        probes = target_probes(profile.verify_ms(1, 5, 64), batched=unequal)
        assert probed_unequal_rows(probes) == pytest.approx(1.25)
        assert probed_unequal_rows(target_probes(1.0, batched=batched)) is None

        plain, probed = (
            two_row_batch_ms(simulate(scenario, profile_path, **options))
            for options in ({}, {"speed_probes": probes})
        )
        assert len(plain) == len(probed) > 3
        ratios[alpha] = [round(a / b, 6) for a, b in zip(probed, plain, strict=True)]
    assert set(ratios[1.0]) == {1.0}
    assert ratios[0.5][0] == 1.0 and set(ratios[0.5]) == {1.0, 1.25}


def test_the_target_s_prefills_are_scaled_by_the_speed_probed_at_a_prefill(tmp_path) -> None:
    """A prefill's speed drifts apart from a verification's: where the target's probes
    timed a prefill, the open's prefill is scaled by that ratio, not the verifications'."""
    scenario, profile_path = write_scenario(
        tmp_path, {"constant": {"delay_ms": 5}}, policy="fixed:1", tokens=12
    )
    profile = PairProfile(json.loads(profile_path.read_text()), "s")
    verify = 2.0 * profile.verify_ms(1, 5, 64)  # verifications twice the grid's price
    prefill = 0.5 * profile.target_prefill_ms(40)  # prefills half of it
    probed = target_probes(verify, prompt_tokens=40, prefill_ms=prefill)
    unprobed = target_probes(verify)
    assert probed_prefill_speed(probed, profile) == pytest.approx(0.5)
    assert probed_prefill_speed(unprobed, profile) is None

    def first_prefill(probes: list[dict[str, Any]]) -> float:
        events = simulate(scenario, profile_path, speed_probes=probes)
        return next(e for e in events if e["event"] == "request")["target_prefill_ms"]

    assert first_prefill(probed) == pytest.approx(0.25 * first_prefill(unprobed))


def test_a_round_after_a_fully_accepted_one_feeds_two_tokens_first(tmp_path) -> None:
    """After a whole round was accepted the drafter feeds its last drafted token and the
    bonus token in one forward: the profile prices that first step apart."""
    scenario, profile = write_scenario(
        tmp_path, {"constant": {"delay_ms": 5}}, tokens=20, policy="fixed:2", step_ms=10.0
    )
    data = json.loads(profile.read_text())
    for point in data["draft_step_ms"]:
        point["first_after_accept_ms"] = 30.0
    prompt = load_scenario(scenario).workload.prompts[0]
    matches = "0" + "111" + "0" + "1" * 30  # position 3 is the first round's bonus token
    data["acceptance"]["per_prompt"] = {
        prompt: {"reached": [1] * 8, "accepted": [1] * 8, "matches": matches}
    }
    profile.write_text(json.dumps(data))
    rounds = rounds_of(simulate(scenario, profile))
    assert [r["accepted"] for r in rounds[:3]] == [2, 0, 2]
    # the first round feeds the target's first token; the second follows a whole round;
    # the third follows a rejection; the fourth follows a whole round again
    assert [r["draft_ms"] for r in rounds[:4]] == pytest.approx([20.0, 40.0, 20.0, 40.0])


def test_a_link_followed_per_packet_times_rounds_as_the_analytic_one(tmp_path) -> None:
    """A byte-limited drop-tail queue that never fills makes the simulator follow the link
    packet by packet, through the delay line's own stages: the same round trips."""
    link = {"constant": {"delay_ms": 5.0, "rate_mbps": 0.5}}
    scenario, profile = write_scenario(tmp_path, link, verify=40.0)
    analytic = rounds_of(simulate(scenario, profile))
    per_packet = {**link, "queue": {"kind": "droptail", "bytes": 1_000_000}}
    scenario, profile = write_scenario(tmp_path, per_packet, verify=40.0)
    assert load_scenario(scenario).edges[0].link.per_packet
    followed = rounds_of(simulate(scenario, profile))
    assert [r["t_recv"] - r["t_send"] for r in followed] == pytest.approx(
        [r["t_recv"] - r["t_send"] for r in analytic]
    )


def test_delivery_opportunities_carry_a_message_packet_by_packet(tmp_path) -> None:
    """Opportunities every ms: a 3000-byte message is three packets (3165 IP bytes), out
    with the third opportunity; one entering at 10.5 ms waits for the one at 11."""
    (tmp_path / "every-ms").write_text("\n".join(str(t) for t in range(1, 1001)) + "\n")
    spec = (
        load_scenario(
            write_scenario(
                tmp_path, {"mm_link": f"{tmp_path / 'every-ms'} {tmp_path / 'every-ms'}"}
            )[0]
        )
        .edges[0]
        .link
    )
    engine = Engine()
    link = PacketLink(engine, spec, "up", LinkSchedule(spec.trace, "up"), random.Random(0))
    exits: list[float] = []
    engine.at(0.5, lambda _: link.enter(3000, engine.now, exits.append))
    engine.at(10.5, lambda _: link.enter(100, engine.now, exits.append))
    engine.run()
    assert exits == [3.0, 11.0]
