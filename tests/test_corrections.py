"""From DSD-Sim's model of the authors' setting to ours: each step's scenario differs from
the one before by its correction alone, and the command reports every step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli import run_script
from test_gpu_profiles import needs_vidur

from emulator.experiments.corrections import STEPS, step_scenarios, with_recorded_rates
from emulator.scenario import load_scenario
from emulator.traces.recorded import SHARED_TRACES
from emulator.traces.stats import summarise_trace

TOPOLOGIES = Path(__file__).resolve().parents[1] / "topologies"
PAPER, TRACES = TOPOLOGIES / "dsd-paper.yaml", TOPOLOGIES / "dsd-paper-traces.yaml"
needs_traces = pytest.mark.skipif(
    not SHARED_TRACES.is_dir(), reason=f"the recorded traces are absent ({SHARED_TRACES})"
)


def links(raw: dict) -> dict[str, dict]:
    return {group["name"]: group["link"] for group in raw["edges"]}


@needs_traces
def test_each_step_adds_its_correction_alone() -> None:
    steps = step_scenarios(PAPER, TRACES)
    assert list(steps) == [step.name for step in STEPS]
    assert [step.fixed_rounds for step in STEPS] == [True, False, False, False, False]
    assert steps["dsd-sim"] == steps["token-budget"]  # the semantics differ, not the scenario
    lossless, lossy = links(steps["token-budget"]), links(steps["loss"])
    assert not any("loss_pct" in link["constant"] for link in lossless.values())
    assert (
        lossy["l2s"]["constant"]["loss_pct"] == 0.6 and "loss_pct" not in lossy["l2f"]["constant"]
    )
    for name, link in lossless.items():
        assert {k: v for k, v in lossy[name]["constant"].items() if k != "loss_pct"} == link[
            "constant"
        ]
    rated = links(steps["bandwidth"])
    recorded = {g.name: g.link.trace for g in load_scenario(TRACES).edges}
    for name, link in rated.items():
        stats = summarise_trace(recorded[name])
        medians = [r for r in (stats["up_mbps_p50"], stats["down_mbps_p50"]) if r is not None]
        assert link["constant"].get("rate_mbps") == (min(medians) if medians else None)
        assert {k: v for k, v in link["constant"].items() if k != "rate_mbps"} == lossy[name][
            "constant"
        ]
    assert links(steps["traces"])["l2s"].get("up", "").startswith("mahimahi:")
    alpha = step_scenarios(PAPER, TRACES, alpha=0.414)["loss"]["edges"][3]["acceptance"]
    assert alpha["alpha"] == 0.414


@needs_traces
def test_recorded_rates_come_from_each_tiers_own_trace() -> None:
    raw = with_recorded_rates(step_scenarios(PAPER, TRACES)["loss"], TRACES)
    rates = {name: link["constant"].get("rate_mbps") for name, link in links(raw).items()}
    assert rates["l2f"] == rates["l31f"]  # both replay the same WiFi trace
    assert rates["clf"] is None  # the edge-vs-cloud RTT trace has no rate
    assert rates["l2s"] != rates["l2f"]


@pytest.mark.slow
@needs_vidur
@needs_traces
def test_the_comparison_command_reports_every_step(tmp_path: Path) -> None:
    done = run_script(
        "compare_dsd_sim.py", "--edges", "10", "--alpha", "0.414", "--out", str(tmp_path), "--json"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    steps = summary["steps"]
    assert [s["step"] for s in steps] == [step.name for step in STEPS]
    # at α = 0.414 a round emits about 1.7 tokens: fixed rounds stop at a quarter of the
    # rounds the token budget needs, and credit tokens never emitted
    fixed, budget = steps[0], steps[1]
    assert fixed["rounds_per_request"] < 0.5 * budget["rounds_per_request"]
    assert fixed["throughput_tok_s"] > 1.5 * budget["throughput_tok_s"]
    assert all(any("attention" in part for part in s["modelled"]) for s in steps)
    assert "Modelled, not measured" in (Path(summary["results_dir"]) / "corrections.md").read_text()
