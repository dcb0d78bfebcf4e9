"""The main job, ``run_topology.py``: end to end in Mininet, Ctrl-C, traces followed, options.

The end-to-end tests need root and Mininet (CI runs as root); they use the bundled model
where the fidelity report is the point, and the tiny pair where only the plumbing is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli import ROOT, run_script

from emulator.net.cleanup import cleanup, find_leftovers
from emulator.run.mainjob import preflight
from emulator.scenario import Overrides, load_scenario
from emulator.traces.csvio import write_trace
from emulator.traces.linktrace import LinkTrace
from emulator.traces.recorded import SHARED_TRACES
from runtime.events import read_events
from runtime.machine import fingerprint
from runtime.profile_store import cached_profile_path

SHARED = SHARED_TRACES
SCRIPT = ROOT / "scripts" / "run_topology.py"


def tiny_scenario(folder: Path, link: dict, tokens: int = 40, requests: int = 1) -> Path:
    """One edge with the tiny random pair (fast to load and run) on the given link."""
    scenario = {
        "name": "tiny",
        "seed": 3,
        "cloud": {"model": "tiny", "cpu": 1.0},
        "edges": [{"name": "e", "count": 1, "draft": "perturbed:0.1", "cpu": 0.5, "link": link}],
        "workload": {"requests_per_edge": requests, "max_new_tokens": tokens},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


@pytest.fixture(autouse=True)
def clean_afterwards():
    """Whatever a failing test left must not break the next one."""
    yield
    if os.geteuid() == 0:
        cleanup()


def assert_nothing_left() -> None:
    leftovers = find_leftovers()
    cleanup()
    assert not any(leftovers.values()), leftovers


@pytest.mark.root
def test_default_scenario_end_to_end_with_the_fidelity_report(tmp_path, default_pair) -> None:
    result = run_script(
        "run_topology.py",
        "--edges",
        "2",
        "--requests",
        "1",
        "--max-new-tokens",
        "16",
        "--out",
        str(tmp_path),
        "--json-summary",
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["backend"] in ("netem", "delayline")
    for part in ("emu", "sim", "error"):
        assert set(summary[part]) >= {"ttft_p50_ms", "tpot_p50_ms", "throughput_tok_s"}
    assert summary["emu"]["acceptance"] is not None and summary["sim"]["tokens_per_round"] > 1
    out = Path(summary["results_dir"])
    expected = {
        "scenario.yaml",
        "run.json",
        "metrics.json",
        "report.md",
        "links.png",
        "gamma.png",
        "tpot_cdf.png",
        "acceptance.png",
        "cloud.jsonl",
        "lte1.jsonl",
        "wifi1.jsonl",
        "links.jsonl",
        "resources.jsonl",
        "sim.jsonl",
    }
    assert expected <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["emu"]["requests"] == 2 and metrics["emu"]["output_tokens"] == 32
    assert metrics["sim"]["output_tokens"] == 32
    round_time = metrics["round_time"]  # where each world's round time goes
    assert round_time["verify"]["emu_ms"] > 0 and round_time["draft"]["sim_ms"] > 0
    first_token = metrics["first_token_time"]  # where each world's TTFT goes
    assert first_token["prefill"]["emu_ms"] > 0 and first_token["draft_prefill"]["sim_ms"] > 0
    assert "Where the round time goes" in (out / "report.md").read_text()
    assert "Where the first token's time goes" in (out / "report.md").read_text()
    # the simulator was calibrated from this machine's cached profile, and says which
    used = metrics["sim_profiles"]["int8"]
    assert used == json.loads((out / "run.json").read_text())["sim_profiles"]["int8"]
    assert used["fingerprint"] == fingerprint(1) and used["fingerprint_id"] in used["path"]
    assert used["path"] == str(cached_profile_path("smollm2", "int8", fingerprint(1)))
    assert metrics["resources"]["samples"] > 0
    assert "fidelity (simulated vs emulated)" in result.stdout
    assert "Fidelity" in (out / "report.md").read_text()
    assert_nothing_left()


@pytest.mark.root
def test_emulated_edges_replay_the_profile_and_hold_no_model(tmp_path, default_pair) -> None:
    """``--draft replay``: every edge process replays the profile's tables (no torch, under
    100 MB), the rounds say where their tokens came from, the simulator runs beside, and
    nothing is left behind."""
    result = run_script(
        "run_topology.py",
        *("--edges", "4", "--draft", "replay", "--requests", "1", "--max-new-tokens", "16"),
        *("--out", str(tmp_path), "--json-summary"),
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    out = Path(summary["results_dir"])
    events = read_events(*sorted(out.glob("*[0-9].jsonl")))
    rounds = [e for e in events if e["event"] == "round"]
    assert len({e["edge"] for e in rounds}) == 4
    assert {e["proposal_source"] for e in rounds} <= {"table", "fallback"}
    replayed = summary["replayed_rounds"]
    assert replayed["table"] + replayed["fallback"] == len(rounds) and replayed["table"] > 0
    edges = [e for e in events if e["event"] == "process" and e["role"].startswith("draft:")]
    assert len(edges) == 4
    assert all(e["torch_threads"] is None and e["peak_rss_mb"] < 100 for e in edges)
    assert (out / "draft-service.jsonl").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["emu"]["output_tokens"] == metrics["sim"]["output_tokens"] == 64
    assert "emulated edges (draft: replay)" in result.stdout
    assert_nothing_left()


@pytest.mark.root
def test_ctrl_c_in_the_middle_leaves_nothing_behind(tmp_path) -> None:
    scenario = tiny_scenario(tmp_path, {"constant": {"delay_ms": 20}}, tokens=2000, requests=5)
    process = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--scenario",
            str(scenario),
            "--out",
            str(tmp_path),
            "--no-sim",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "workload started" in line:
            break
    assert any("workload started" in line for line in lines), "".join(lines)
    process.send_signal(signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 130, "".join(lines) + rest
    (out,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (out / "e1.jsonl").exists() and (out / "report.md").exists()
    assert_nothing_left()


@pytest.mark.root
def test_measured_round_trips_follow_the_trace_rtt(tmp_path) -> None:
    """The access link's one-way delay steps from 10 to 60 ms at 3 s: the network part of the
    runtime's round trips follows, from ~20 to ~120 ms."""
    nan = np.full(2, np.nan)
    series = {
        "rate_mbps": nan,
        "delay_ms": np.array([10.0, 60.0]),
        "jitter_ms": nan,
        "loss_pct": nan,
    }
    trace = tmp_path / "step.csv"
    write_trace(LinkTrace(np.array([0.0, 3.0]), 600.0, series, dict(series)), trace)
    scenario = tiny_scenario(tmp_path, {"trace": str(trace)}, tokens=800)
    result = run_script(
        "run_topology.py",
        "--scenario",
        str(scenario),
        "--out",
        str(tmp_path),
        "--no-sim",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (out,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    t_start = json.loads((out / "run.json").read_text())["t_start"]
    rounds = [e for e in read_events(out / "e1.jsonl") if e["event"] == "round"]
    network = [
        (
            r["t_send"] - t_start,
            (r["t_recv"] - r["t_send"] - r["server_t_send"] + r["server_t_recv"]) * 1000,
        )
        for r in rounds
    ]
    early = [ms for t, ms in network if 0.5 < t < 2.5]
    late = [ms for t, ms in network if t > 3.5]
    assert len(early) > 5 and len(late) > 5, network[:10]
    assert 19.0 < np.median(early) < 25.0
    assert 119.0 < np.median(late) < 125.0
    assert_nothing_left()


def test_recorded_traces_combine_from_the_command_line() -> None:
    if not SHARED.is_dir():
        pytest.skip("the recorded traces (../shared/traces) are not here")
    mahimahi = SHARED / "mahimahi" / "ATT-LTE-driving-2016"
    rtt = SHARED / "mecperf" / "lte-TCPRTT-noise0M_Client_cloud_trace0.txt"
    overrides = Overrides(
        traces={
            "lte.up": f"mahimahi:{mahimahi}.up",
            "lte.down": f"mahimahi:{mahimahi}.down",
            "lte.rtt": f"mecperf:{rtt}",
        }
    )
    scenario = load_scenario(ROOT / "topologies" / "default.yaml", overrides)
    trace = scenario.edges[0].link.trace
    assert "mahimahi" in scenario.edges[0].link.description
    assert np.nanmean(trace.down["rate_mbps"]) > 0
    assert np.isfinite(trace.up["delay_ms"]).all()


@pytest.mark.slow
def test_command_line_mistakes_are_one_line_each(tmp_path) -> None:
    bad_trace = run_script("run_topology.py", "--trace", "nowhere=traces/lte-like.csv")
    assert bad_trace.returncode == 2 and "has no link 'nowhere'" in bad_trace.stderr
    bad_form = run_script("run_topology.py", "--trace", "lte")
    assert bad_form.returncode == 2 and "LINK=TRACE" in bad_form.stderr
    missing = run_script("run_topology.py", "--scenario", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "no such scenario file" in missing.stderr
    older = run_script("run_topology.py", "--topology", str(tmp_path / "none.yaml"))  # its old name
    assert older.returncode == 2 and "no such scenario file" in older.stderr
    for result in (bad_trace, bad_form, missing, older):
        assert "Traceback" not in result.stderr


def test_preflight_says_sudo_is_needed_when_not_root(monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    scenario = load_scenario(ROOT / "topologies" / "default.yaml")
    problems = preflight(scenario, True, say=print)
    assert any("sudo python scripts/run_topology.py" in p for p in problems)


@pytest.mark.parametrize(
    ("script", "usage"),
    [("run_topology.py", "--trace LINK=TRACE"), ("evaluate_awc.py", "--world {sim,emu,both}")],
)
def test_a_python_without_the_packages_re_runs_itself_in_the_venv(script, usage) -> None:
    system = Path("/usr/bin/python3")
    venv = ROOT / ".venv" / "bin" / "python"
    if not system.exists() or not venv.exists():
        pytest.skip("needs a system python3 and the project's .venv")
    probe = subprocess.run([str(system), "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the system python3 has the project's packages")
    result = subprocess.run(
        [str(system), str(ROOT / "scripts" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DSD_EMU_REEXEC"},
    )
    assert result.returncode == 0, result.stderr
    assert "re-running with .venv/bin/python" in result.stderr
    assert usage in result.stdout
