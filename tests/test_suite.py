"""The fidelity suite: its scenario matrix, how a case is scored and the suite summarised,
and ``validate_fidelity.py`` run for real (the smoke suite in Mininet, as root)."""

from __future__ import annotations

import json

import pytest

from emulator.fidelity import round_trips, token_intervals
from emulator.scenario import load_scenario
from emulator.suite import SUITES, write_suite
from emulator.suite_results import mape_key, score_run, suite_markdown, summarise_suite
from emulator.traces.recorded import SHARED_TRACES
from tests.cli import require_mininet, run_script


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
            {
                "event": "round",
                "session": "e1-0",
                "edge": "e1",
                "round": index,
                "gamma": 2,
                "drafted": 2,
                "accepted": 1,
                "emitted": 2,
                "context_len": 40,
                "draft_ms": draft_ms * world_scale,
                "t_send": t_send,
                "t_recv": t,
                "server_t_recv": server_recv,
                "server_t_send": server_send,
                "queue_ms": 0.0,
                "verify_ms": 100.0 * world_scale,
                "batch_size": 1,
            }
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


def test_a_miss_of_tokens_per_round_is_attributed_to_acceptance() -> None:
    sim = session_events(1.0)
    for record in sim:
        if record["event"] == "round":
            record.update(accepted=2, emitted=3)
    score = score_run(session_events(1.0), sim)
    assert set(score["misses"]) == {"acceptance", "tokens_per_round"}
    assert score["attributed_to"] == ["acceptance"]


def test_the_suite_summary_pools_errors_and_policy_rankings() -> None:
    def case(group: str, policy: str, emu_scale: float, sim_scale: float) -> dict:
        return {
            "group": group,
            "policy": policy,
            "score": score_run(session_events(emu_scale), session_events(sim_scale)),
        }

    cases = {
        # in group a, fixed:4 is faster than awc in both worlds; in b the simulator swaps them
        "a-fixed4": case("a", "fixed:4", 1.0, 1.0),
        "a-awc": case("a", "awc", 1.2, 1.1),
        "b-fixed4": case("b", "fixed:4", 1.0, 1.3),
        "b-awc": case("b", "awc", 1.2, 1.2),
        "c-awc": {"group": "c", "policy": "awc", "error": "took over 900 s"},
    }
    summary = summarise_suite(cases)
    assert summary["rank_agreement"] == 0.5 and summary["ranked_pairs"] == 2
    assert summary["failed_cases"] == 1 and summary["targets_met"] is False
    errors = [c["score"]["metrics"]["throughput_tok_s"]["error"] for c in list(cases.values())[:4]]
    assert summary["throughput_mape"] == pytest.approx(sum(map(abs, errors)) / 4)
    assert summary["tokens_per_round_mape"] == 0.0
    report = suite_markdown(cases, summary)
    assert "| c-awc | failed: took over 900 s |" in report
    assert "### b-fixed4:" in report and "### a-fixed4:" not in report


def test_mape_keys_are_the_issue_s_summary_fields() -> None:
    names = {mape_key(m) for m in ("tpot_mean_ms", "tpot_p95_ms", "throughput_tok_s")}
    assert names == {"tpot_mean_mape", "tpot_p95_mape", "throughput_mape"}
    assert mape_key("tokens_per_round") == "tokens_per_round_mape"


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="the recorded traces are not beside us")
def test_every_suite_case_is_a_valid_scenario_and_the_matrix_spans_what_the_issue_names(
    tmp_path,
) -> None:
    assert len(SUITES["smoke"]) <= 4 and len(SUITES["full"]) >= 12
    written = write_suite("full", tmp_path, seed=3)
    links = {case.link for case, _ in written}
    assert {"lte-driving", "3g-bus", "5g-driving", "wifi", "edge-vs-cloud-rtt"} <= links
    assert {case.edges for case, _ in written} == {1, 2, 3}
    assert {case.load for case, _ in written} == {"light", "saturating"}
    assert {"fixed:4", "heuristic", "awc"} <= {case.policy for case, _ in written}
    for case, path in written:
        scenario = load_scenario(path)
        assert scenario.seed == 3 and len(scenario.edge_hosts()) == case.edges
        assert scenario.edges[0].policy == case.policy
    assert len({case.name for case, _ in written}) == len(written)


def test_validate_fidelity_reports_a_bad_scenario_in_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("edges: [{name: e, link: {constant: {rate_mbps: -1}}}]\n")
    run = run_script("validate_fidelity.py", "--scenario", str(bad), "--out", str(tmp_path))
    assert run.returncode == 2, run.stderr
    assert "rate_mbps" in run.stderr and "Traceback" not in run.stderr
    run = run_script("validate_fidelity.py", "--suite", "huge")
    assert run.returncode == 2 and "invalid choice" in run.stderr


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="the recorded traces are not beside us")
def test_the_smoke_suite_runs_both_worlds_and_reports_every_summary_field(tmp_path) -> None:
    require_mininet()
    run = run_script(
        "validate_fidelity.py", "--suite", "smoke", "--json", "--out", str(tmp_path), timeout=1800
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result["cases"]) == {case.name for case in SUITES["smoke"]}
    for key in ("tpot_mean_mape", "tpot_p95_mape", "throughput_mape", "tokens_per_round_mape"):
        assert 0.0 <= result[key] < 0.25, (key, result[key])
    assert result["rank_agreement"] is not None and result["ranked_pairs"] == 1
    for case in result["cases"].values():
        assert 0.0 <= case["score"]["ks_tpot"] <= 1.0
        assert set(case["score"]["round_time"]) >= {"draft", "uplink", "verify"}
    folder = tmp_path / next(p.name for p in tmp_path.iterdir() if "fidelity-smoke" in p.name)
    for name in ("fidelity.json", "fidelity.md", "errors.png", "cdf-tpot.png"):
        assert (folder / name).stat().st_size > 0
    assert not (folder / "partial.json").exists()


def test_one_scenario_of_the_user_s_runs_in_both_worlds(tmp_path) -> None:
    require_mininet()
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
    assert result["rank_agreement"] is None and result["ranked_pairs"] == 0
    assert set(case["sim_speeds"]) == {"cloud", "e1"}
