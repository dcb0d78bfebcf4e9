"""simulate.py and bench_sim.py as a user runs them."""

from __future__ import annotations

import json

from cli import ROOT
from cli import run_command as run

SCRIPTS = ROOT / "scripts"


def test_simulate_the_default_scenario(tmp_path) -> None:
    result = run(f"{SCRIPTS / 'simulate.py'} topologies/default.yaml --json --out {tmp_path}")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["requests"] == 6 and summary["output_tokens"] == 6 * 48
    assert set(summary["per_edge"]) == {"lte1", "wifi1", "nr1"}
    for key in ("ttft_ms", "tpot_ms"):
        assert summary[key]["p50"] > 0 and summary[key]["p95"] >= summary[key]["p50"]
    assert summary["throughput_tok_s"] > 0 and 0 < summary["acceptance_rate"] < 1
    assert summary["tokens_per_round"] > 1
    assert "overall" in result.stdout and "TPOT p50" in result.stdout
    (folder,) = tmp_path.iterdir()
    assert {p.name for p in folder.iterdir()} == {"events.jsonl", "metrics.json", "run.png"}


def test_simulate_overrides_edges_and_policy() -> None:
    result = run(
        f"{SCRIPTS / 'simulate.py'} topologies/default.yaml --edges 7 --policy fixed:2 "
        "--requests 1 --max-new-tokens 20 --no-save --json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(summary["per_edge"]) == 7 and summary["gamma"]["p95"] <= 2
    assert "... and" not in result.stdout  # 7 edges fit the table


def test_simulate_reports_user_mistakes_without_a_traceback(tmp_path) -> None:
    missing = run(f"{SCRIPTS / 'simulate.py'} {tmp_path / 'nope.yaml'}")
    assert missing.returncode == 2 and "no such scenario file" in missing.stderr
    policy = run(f"{SCRIPTS / 'simulate.py'} topologies/default.yaml --policy sometimes")
    assert policy.returncode == 2 and "unknown window policy" in policy.stderr
    profile = run(f"{SCRIPTS / 'simulate.py'} topologies/default.yaml --profile {tmp_path}/x")
    assert profile.returncode == 2 and "not a usable profile" in profile.stderr
    for result in (missing, policy, profile):
        assert "Traceback" not in result.stderr


def test_bench_sim_prints_its_figures() -> None:
    result = run(f"{SCRIPTS / 'bench_sim.py'} --edges 40 --tokens 32 --json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("wall_s", "rounds", "rounds_per_s", "events_per_s", "peak_rss_mb"):
        assert figures[key] > 0
    assert figures["requests_done"] == 40
    assert figures["target_wall_s"] is None and figures["targets_met"] is True


def test_bench_sim_fails_a_run_past_its_target() -> None:
    """The target is judged, not only printed: a run past it exits 1 and says so."""
    loose = run(f"{SCRIPTS / 'bench_sim.py'} --edges 20 --tokens 16 --json --target-wall-s 600")
    assert loose.returncode == 0 and json.loads(loose.stdout.splitlines()[-1])["targets_met"]
    tight = run(f"{SCRIPTS / 'bench_sim.py'} --edges 20 --tokens 16 --json --target-wall-s 1e-6")
    assert tight.returncode == 1, tight.stderr
    figures = json.loads(tight.stdout.splitlines()[-1])
    assert figures["targets_met"] is False and figures["wall_s"] > figures["target_wall_s"]
