"""The fidelity suite: its scenario matrix, how a case is scored and the suite summarised,
and ``validate_fidelity.py`` run for real (the smoke suite in Mininet, as root)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from records import round_event

from emulator.cli import fidelity as validate_fidelity
from emulator.experiments.suite import SUITES, write_suite
from emulator.experiments.suite_results import mape_key, score_case, suite_markdown, summarise_suite
from emulator.experiments.suite_stats import (
    MIN_SAMPLES,
    interval,
    mape_with_interval,
    resolved_rank_agreement,
    t_interval,
)
from emulator.report.fidelity import round_trips, token_intervals
from emulator.scenario import load_scenario
from emulator.traces.recorded import SHARED_TRACES
from tests.cli import run_script

ROOT = Path(__file__).resolve().parents[1]


def session_events(
    world_scale: float, draft_ms: float = 100.0, rounds: int = 4
) -> list[dict[str, object]]:
    """One request of ``rounds`` rounds, each emitting 2 tokens; every time is scaled."""
    events: list[dict[str, object]] = []
    t = 1.0
    first = t
    for index in range(rounds):
        t_send = t + draft_ms * world_scale / 1000.0
        server_recv = t_send + 0.02 * world_scale
        server_send = server_recv + 0.1 * world_scale
        t = server_send + 0.02 * world_scale
        events.append(
            round_event(
                session="e1-0",
                edge="e1",
                round=index,
                gamma=2,
                drafted=2,
                accepted=1,
                emitted=2,
                draft_ms=draft_ms * world_scale,
                t_send=t_send,
                t_recv=t,
                server_t_recv=server_recv,
                server_t_send=server_send,
                verify_ms=100.0 * world_scale,
            )
        )
    events.append(
        {
            "event": "request",
            "session": "e1-0",
            "edge": "e1",
            "output_tokens": 1 + 2 * rounds,
            "t_arrival": 0.5,
            "t_first_token": first,
            "t_done": t,
        }
    )
    return events


def test_per_round_tpot_and_round_trips_come_from_the_rounds() -> None:
    events = session_events(1.0)
    # each round: 100 ms draft + 20 up + 100 server + 20 down = 240 ms for 2 tokens
    assert token_intervals(events) == pytest.approx([120.0] * 4)
    assert round_trips(events) == pytest.approx([140.0] * 4)


def score_run(emu: list, sim: list, times: int = 50) -> dict:
    """One repeat's case, scored with a small bootstrap (seeded)."""
    return score_case({1: (emu, sim)}, np.random.default_rng(0), times)


def test_a_case_is_scored_per_metric_and_a_miss_is_attributed_to_its_component() -> None:
    emu = session_events(1.0, draft_ms=100.0)
    sim = session_events(1.0, draft_ms=60.0)  # the simulator drafts too fast
    score = score_run(emu, sim)
    assert score["metrics"]["tokens_per_round"]["error"] == 0.0
    assert score["metrics"]["tpot_mean_ms"]["error"] == pytest.approx((200 - 240) / 240)
    assert "tpot_mean_ms" in score["misses"] and "tokens_per_round" not in score["misses"]
    assert score["attributed_to"] == ["draft"]
    assert score["ks_tpot"] == 1.0 and score["ks_round_trip"] == 0.0
    assert score_run(emu, session_events(1.0))["misses"] == []
    # a single run: no interval for throughput (one number per run), nor a p95 of 4 rounds
    assert score["metrics"]["throughput_tok_s"]["ci"] is None
    assert score["metrics"]["tpot_p95_ms"]["error"] is None and MIN_SAMPLES[95] > 4


def test_a_miss_of_tokens_per_round_is_attributed_to_acceptance() -> None:
    sim = session_events(1.0)
    for record in sim:
        if record["event"] == "round":
            record.update(accepted=2, emitted=3)
    score = score_run(session_events(1.0), sim)
    assert "tokens_per_round" in score["misses"]
    assert score["attributed_to"][0] == "acceptance"


def test_fewer_tokens_per_round_at_the_same_acceptance_is_the_window_choice() -> None:
    sim = session_events(1.0)
    for record in sim:
        if record["event"] == "round":
            record.update(gamma=4, drafted=4, accepted=2, emitted=3)  # still half accepted
    score = score_run(session_events(1.0), sim)
    assert "tokens_per_round" in score["misses"] and score["acceptance_rate"]["error"] == 0.0
    assert score["attributed_to"][0] == "window choice"
    assert score["gamma_mean"] == {"emu": 2.0, "sim": 4.0}


def test_a_miss_of_ttft_is_attributed_to_the_first_token_s_path() -> None:
    def with_open(events: list, prefill_ms: float) -> list:
        for record in events:
            if record["event"] == "request":
                record["t_first_token"] = 0.5 + (50 + prefill_ms + 20) / 1000
                record.update(
                    t_open_sent=0.5,
                    open_server_t_recv=0.55,
                    open_server_t_send=0.55 + prefill_ms / 1000,
                    target_prefill_ms=prefill_ms,
                    draft_prefill_ms=30.0,
                )
        return events

    score = score_run(with_open(session_events(1.0), 200.0), with_open(session_events(1.0), 100.0))
    assert score["metrics"]["ttft_mean_ms"]["error"] == pytest.approx((170 - 270) / 270)
    assert "first token: prefill" in score["attributed_to"]
    assert score["first_token_time"]["draft_prefill"]["share"] is None  # it overlaps


def test_repeats_give_every_error_an_interval_that_narrows_with_more_of_them() -> None:
    def runs(count: int) -> dict:  # the emulated runs spread by +-5 %, the simulated not
        scales = (0.95, 1.0, 1.05)
        return {
            seed: (session_events(scales[seed % 3]), session_events(1.1)) for seed in range(count)
        }

    few = score_case(runs(3), np.random.default_rng(0), 200)
    many = score_case(runs(12), np.random.default_rng(0), 200)
    for score in (few, many):
        low, high = score["metrics"]["throughput_tok_s"]["ci"]
        assert low <= score["metrics"]["throughput_tok_s"]["error"] <= high
    width = {
        name: score["metrics"]["tpot_mean_ms"]["ci"][1] - score["metrics"]["tpot_mean_ms"]["ci"][0]
        for name, score in (("few", few), ("many", many))
    }
    assert width["many"] < width["few"]
    assert interval(np.array([np.nan] * 5 + [0.1])) is None  # most replicates missing
    # a MAPE's interval: each case anywhere within its own interval
    assert mape_with_interval([0.01, -0.1], [[-0.02, 0.03], [-0.15, -0.05]]) == (
        pytest.approx(0.055),
        [pytest.approx(0.025), pytest.approx(0.09)],
    )
    assert mape_with_interval([0.01], [None]) == (0.01, None)
    assert t_interval([1.0]) is None and t_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)


def test_requests_are_resampled_with_their_counterparts_so_shared_luck_is_no_noise() -> None:
    """Both worlds replay the same text: rounds that emit 1 or 5 tokens in both are no
    uncertainty about the simulator's error, however much they vary."""
    events = session_events(1.0, rounds=30)
    for index, record in enumerate(e for e in events if e["event"] == "round"):
        record.update(emitted=1 + 4 * (index % 3 == 0), accepted=4 * (index % 3 == 0))
    score = score_run(events, [dict(e) for e in events], times=100)
    assert score["metrics"]["tokens_per_round"]["ci"] == [0.0, 0.0]


def test_rank_agreement_counts_only_the_pairs_the_emulator_resolves() -> None:
    groups = {
        "g": {
            "fast": {"emu": [10.0, 10.2, 10.1], "sim": [9.0, 9.1, 9.0]},
            "slow": {"emu": [8.0, 8.1, 7.9], "sim": [9.5, 9.4, 9.6]},  # swapped: a disagreement
            "same": {"emu": [10.0, 8.0, 10.3], "sim": [1.0, 1.0, 1.0]},  # within the noise
        }
    }
    ranked = resolved_rank_agreement(groups)
    assert ranked == {"rank_agreement": 0.0, "ranked_pairs": 1, "unresolved_pairs": 2}
    one_repeat = {
        "g": {a: {"emu": v["emu"][:1], "sim": v["sim"][:1]} for a, v in groups["g"].items()}
    }
    assert resolved_rank_agreement(one_repeat)["ranked_pairs"] == 0


def test_the_suite_summary_pools_errors_per_set() -> None:
    def case(group: str, policy: str, split: str, emu_scale: float, sim_scale: float) -> dict:
        runs = {seed: (session_events(emu_scale), session_events(sim_scale)) for seed in (1, 2)}
        score = score_case(runs, np.random.default_rng(0), 50)
        return {"group": group, "policy": policy, "split": split, "score": score}

    cases = {
        "a-fixed4": case("a", "fixed:4", "development", 1.0, 1.0),
        "a-awc": case("a", "awc", "development", 1.2, 1.1),
        "h-awc": case("h", "awc", "held-out", 1.0, 1.3),
        "c-awc": {"group": "c", "policy": "awc", "split": "development", "error": "took over"},
    }
    summaries = summarise_suite(cases)
    assert set(summaries) == {"development", "held-out"}
    development, held_out = summaries["development"], summaries["held-out"]
    assert development["failed_cases"] == 1 and development["targets_met"] is False
    errors = [
        cases[n]["score"]["metrics"]["throughput_tok_s"]["error"] for n in ("a-fixed4", "a-awc")
    ]
    assert development["throughput_mape"] == pytest.approx(sum(map(abs, errors)) / 2)
    held_out_error = cases["h-awc"]["score"]["metrics"]["throughput_tok_s"]["error"]
    assert held_out_error < -0.1 and held_out["throughput_mape"] == pytest.approx(-held_out_error)
    assert development["tokens_per_round_mape"] == 0.0
    low, high = development["tpot_mean_mape_ci"]  # the cases' intervals imply the MAPE's
    assert low <= development["tpot_mean_mape"] <= high
    report = suite_markdown(cases, summaries)
    assert "| c-awc | failed: took over |" in report
    assert "### h-awc:" in report and "### a-fixed4:" not in report
    assert "## held-out: simulated vs emulated per case" in report


def test_mape_keys_are_the_issue_s_summary_fields() -> None:
    names = {
        mape_key(m) for m in ("tpot_mean_ms", "tpot_p95_ms", "ttft_p50_ms", "throughput_tok_s")
    }
    assert names == {"tpot_mean_mape", "tpot_p95_mape", "ttft_p50_mape", "throughput_mape"}
    assert mape_key("tokens_per_round") == "tokens_per_round_mape"


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="the recorded traces are not beside us")
def test_every_suite_case_is_a_valid_scenario_and_the_matrix_spans_what_the_issue_names(
    tmp_path,
) -> None:
    assert len(SUITES["smoke"]) <= 4 and len(SUITES["full"]) >= 20
    written = write_suite("full", tmp_path, seed=3)
    development = [(c, p) for c, p in written if c.split == "development"]
    held_out = [(c, p) for c, p in written if c.split == "held-out"]
    assert len(development) >= 12 and len(held_out) >= 6
    for cases in (development, held_out):  # both sets span the families, edges and policies
        assert {case.edges for case, _ in cases} == {1, 2, 3}
        assert {"awc", "heuristic"} <= {case.policy for case, _ in cases}
    links = {case.link for case, _ in development}
    assert {"lte-driving", "3g-bus", "5g-driving", "wifi", "edge-vs-cloud-rtt"} <= links
    assert not links & {case.link for case, _ in held_out}  # other recordings
    assert {case.load for case, _ in development} == {"light", "saturating"}
    assert "moderate" in {case.load for case, _ in held_out}  # a load the development set lacks
    prompts = {}
    for case, path in written:
        scenario = load_scenario(path)
        assert scenario.seed == (3 if case.split == "development" else 1003)
        assert len(scenario.edge_hosts()) == case.edges
        assert scenario.edges[0].policy == case.policy
        prompts.setdefault(case.split, set()).update(scenario.workload.prompts[:4])
    assert not prompts["development"] & prompts["held-out"]  # other prompts too
    assert len({case.name for case, _ in written}) == len(written)
    assert {c.split for c, _ in write_suite("full", tmp_path, 3, "held-out")} == {"held-out"}


def test_validate_fidelity_reports_a_bad_scenario_in_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("edges: [{name: e, link: {constant: {rate_mbps: -1}}}]\n")
    run = run_script("validate_fidelity.py", "--scenario", str(bad), "--out", str(tmp_path))
    assert run.returncode == 2, run.stderr
    assert "rate_mbps" in run.stderr and "Traceback" not in run.stderr
    run = run_script("validate_fidelity.py", "--suite", "huge")
    assert run.returncode == 2 and "invalid choice" in run.stderr


def test_validate_fidelity_profiles_every_pair_its_cases_simulate_before_any_case(
    tmp_path, monkeypatch, capsys
) -> None:
    """In view, before the first case: a case's main job would measure it silently. (The
    profiler itself is stood in for here: tests/test_profile.py runs it.)"""
    asked = []

    def profile(target: str, draft: str, threads: int, say) -> None:
        say(f"profiling {target} / {draft}")
        asked.append((target, draft, threads))

    monkeypatch.setattr(validate_fidelity, "machine_profile", profile)
    scenario = tmp_path / "two.yaml"
    scenario.write_text(
        "name: two\n"
        "edges: [{name: a, draft: int8, link: {constant: {delay_ms: 5}}},"
        " {name: b, draft: 'perturbed:0.1', link: {constant: {delay_ms: 5}}}]\n"
    )
    validate_fidelity.profile_first([{"path": scenario}, {"path": scenario}])
    assert asked == [("smollm2", "int8", 1), ("smollm2", "perturbed:0.1", 1)]
    assert "validate_fidelity: profiling smollm2 / int8" in capsys.readouterr().out


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="the recorded traces are not beside us")
@pytest.mark.root
def test_the_smoke_suite_runs_both_worlds_and_reports_every_summary_field(tmp_path) -> None:
    run = run_script(
        "validate_fidelity.py", "--suite", "smoke", "--json", "--out", str(tmp_path), timeout=1800
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result["cases"]) == {case.name for case in SUITES["smoke"]}
    assert set(result["sets"]) == {"development", "held-out"} and result["failed_runs"] == 0
    development = result["sets"]["development"]
    for key in ("tpot_mean_mape", "throughput_mape", "tokens_per_round_mape", "e2e_mean_mape"):
        assert 0.0 <= development[key] < 0.25, (key, development[key])
        assert f"{key}_ci" in development
    assert development["ttft_mean_mape"] >= 0.0  # a handful of first tokens: no bound
    # one repeat: no policy pair can be resolved, so none is ranked
    assert development["ranked_pairs"] == 0 and development["unresolved_pairs"] == 1
    for case in result["cases"].values():
        assert 0.0 <= case["score"]["ks_tpot"] <= 1.0
        assert set(case["score"]["round_time"]) >= {"draft", "uplink", "verify"}
        assert set(case["score"]["first_token_time"]) >= {"uplink", "prefill", "draft_prefill"}
        low, high = case["score"]["metrics"]["tpot_mean_ms"]["ci"]
        assert low <= case["score"]["metrics"]["tpot_mean_ms"]["error"] <= high
    folder = tmp_path / next(p.name for p in tmp_path.iterdir() if "fidelity-smoke" in p.name)
    for name in ("fidelity.json", "fidelity.md", "errors.png", "cdf-tpot.png"):
        assert (folder / name).stat().st_size > 0
    assert not (folder / "partial.json").exists()


@pytest.mark.root
def test_one_scenario_of_the_user_s_runs_in_both_worlds(tmp_path) -> None:
    scenario = tmp_path / "mine.yaml"
    scenario.write_text(
        "name: mine\n"
        "edges: [{name: e, cpu: 0.7, policy: fixed:2, "
        "link: {constant: {rate_mbps: 20, delay_ms: 15}}}]\n"
        "workload: {requests_per_edge: 1, max_new_tokens: 12}\n"
    )
    run = run_script(
        "validate_fidelity.py", "--scenario", str(scenario), "--json", "--out", str(tmp_path)
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    case = result["cases"]["mine"]
    assert case["policy"] == "fixed:2" and case["score"]["metrics"]["tokens_per_round"]["emu"] > 1
    assert result["sets"]["development"]["ranked_pairs"] == 0
    (only,) = case["runs"].values()
    assert set(only["sim_speeds"]) == {"cloud", "e1"}
