"""The AWC scripts as a user runs them: evaluate_awc.py in the simulated world (and, as root,
in both worlds), and train_awc.py writing weights the learned policy loads."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli import ROOT, run_script

from emulator.net.cleanup import cleanup, find_leftovers
from runtime.observations import RoundObservation
from runtime.policies import make_window_policy

SUMMARY_FIELDS = (
    "awc_vs_best_fixed_min",
    "awc_vs_fixed4_mean",
    "awc_vs_heuristic_mean",
    "learned_vs_analytic_mean",
    "oracle_gap_mean",
)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_evaluate_in_the_simulator_reports_every_policy_and_the_summary(tmp_path) -> None:
    done = run_script(
        "evaluate_awc.py",
        "--world",
        "sim",
        "--quick",
        "--scenarios",
        "constant-good,constant-bad",
        "--policies",
        "fixed:1,fixed:2,fixed:4,heuristic,awc,learned,oracle",
        "--out",
        str(tmp_path),
        "--json",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    document = last_json(done.stdout)
    assert set(document["scenarios"]) == {"constant-good", "constant-bad"}
    for row in document["scenarios"].values():
        assert set(row) == {
            "fixed:1",
            "fixed:2",
            "fixed:4",
            "heuristic",
            "awc",
            "learned",
            "oracle",
        }
        for metrics in row.values():
            assert metrics["throughput_tok_s"] > 0
            assert metrics["tpot_p50_ms"] > 0 and metrics["tpot_p95_ms"] >= metrics["tpot_p50_ms"]
    summary = document["summary"]
    for field in SUMMARY_FIELDS:
        assert math.isfinite(summary[field]), field
    rows = document["scenarios"].values()
    best = [max(r[p]["throughput_tok_s"] for p in r if p.startswith("fixed:")) for r in rows]
    ratios = [r["awc"]["throughput_tok_s"] / b for r, b in zip(rows, best, strict=True)]
    assert summary["awc_vs_best_fixed_min"] == pytest.approx(min(ratios))
    assert summary["oracle_gap_mean"] > 0  # the clairvoyant policy is ahead of AWC
    (results,) = tmp_path.iterdir()
    assert (results / "policies-sim.png").stat().st_size > 10_000
    assert json.loads((results / "awc.json").read_text()) == document


def test_evaluate_reports_unknown_names_in_one_line(tmp_path) -> None:
    for option, value in (("--scenarios", "moon-link"), ("--policies", "fixed:4,often")):
        done = run_script("evaluate_awc.py", option, value, "--out", str(tmp_path), timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith("evaluate_awc: error: unknown")
        assert "Traceback" not in done.stderr


def test_train_awc_writes_weights_the_learned_policy_runs(tmp_path) -> None:
    weights = tmp_path / "weights.json"
    done = run_script(
        "train_awc.py", "--worlds", "6", "--epochs", "5", "--out", str(weights), timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = last_json(done.stdout)
    assert report["train_samples"] > 100
    data = json.loads(weights.read_text())
    assert data["training"]["worlds"] == 6 and data["training"]["world_ranges"]
    policy = make_window_policy(f"learned:{weights}")
    for _ in range(10):
        gamma = policy.next_gamma(100)
        assert gamma in data["gammas"]
        policy.observe(RoundObservation(gamma, gamma, 1, 200.0, 60.0, 0.0, 1, 20.0, 100))


@pytest.mark.root
def test_evaluate_in_both_worlds_sets_predicted_and_measured_gains_side_by_side(
    tmp_path, default_pair
) -> None:
    try:
        done = run_script(
            "evaluate_awc.py",
            "--world",
            "both",
            "--quick",
            "--scenarios",
            "constant-good",
            "--policies",
            "fixed:4,heuristic,awc",
            "--out",
            str(tmp_path),
            "--json",
            timeout=900,
        )
    finally:
        leftovers = find_leftovers()
        cleanup()
    assert done.returncode == 0, done.stderr + done.stdout[-2000:]
    document = last_json(done.stdout)
    measured = document["emulated"]["scenarios"]["constant-good"]
    assert set(measured) == {"fixed:4", "heuristic", "awc"}
    assert all(m["throughput_tok_s"] > 0 for m in measured.values())
    gains = document["validation"]["constant-good"]
    for baseline in ("best_fixed", "heuristic"):
        predicted = gains[f"predicted_gain_vs_{baseline}_pct"]
        observed = gains[f"measured_gain_vs_{baseline}_pct"]
        assert gains[f"difference_vs_{baseline}_pp"] == pytest.approx(predicted - observed)
    (results,) = tmp_path.glob("*-awc-both")
    assert (results / "gains.png").exists()
    assert not any(leftovers.values()), leftovers
    assert Path(measured["awc"]["results_dir"]).is_relative_to(results / "runs")


def test_ctrl_c_keeps_the_runs_done_so_far(tmp_path) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "evaluate_awc.py"), "--out", str(tmp_path)]
    evaluation = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120.0
        while not list(tmp_path.glob("*/partial.json")) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the first runs are done and kept
        evaluation.send_signal(signal.SIGINT)
        _, stderr = evaluation.communicate(timeout=60)
    finally:
        evaluation.kill()
    assert evaluation.returncode == 130, stderr
    assert "interrupted; the runs done so far are in" in stderr
    assert "Traceback" not in stderr
    (partial,) = tmp_path.glob("*/partial.json")
    done = json.loads(partial.read_text())["sim"]
    assert done and all(done.values())
