"""The four edge modes (dsd, cloud, fused, edge-only) in the scenario, the simulator and the
emulator: what each costs, priced from a synthetic profile, and that the real processes give
the target's greedy text in every cloud-verified mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cli import run_script
from test_sim import rounds_of, simulate, write_scenario

from emulator.net.cleanup import cleanup
from emulator.scenario import ScenarioError, load_scenario
from emulator.traces.csvio import write_trace
from emulator.traces.linktrace import LinkTrace
from runtime.events import read_events
from runtime.policies import BatchingPolicy

DELAY_MS, STEP_MS, PREFILL_MS = 5.0, 10.0, 30.0


def verify_ms(batch: int, tokens: int, context: int) -> float:
    return 20.0 + 10.0 * batch + tokens


def mode_scenario(tmp_path: Path, mode: str, **changes: Any) -> tuple[Path, Path]:
    scenario, profile = write_scenario(
        tmp_path,
        {"constant": {"delay_ms": DELAY_MS, "rate_mbps": 1000}},
        tokens=changes.pop("tokens", 33),
        step_ms=STEP_MS,
        prefill_ms=PREFILL_MS,
        verify=verify_ms,
        **changes,
    )
    raw = yaml.safe_load(scenario.read_text())
    raw["edges"][0]["mode"] = mode
    scenario.write_text(yaml.safe_dump(raw))
    return scenario, profile


def requests_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "request"]


def test_a_cloud_session_gets_one_decoded_token_per_pass_of_the_loop(tmp_path) -> None:
    scenario, profile = mode_scenario(tmp_path, "cloud")
    events = simulate(scenario, profile)
    (request,) = requests_of(events)
    rounds = rounds_of(events)
    assert request["mode"] == "cloud" and request["output_tokens"] == 33
    assert len(rounds) == 32 and {r["emitted"] for r in rounds} == {1}
    assert {r["drafted"] for r in rounds} == {0} and {r["batch_size"] for r in rounds} == {1}
    arrivals = np.diff([r["t_recv"] * 1000 for r in rounds])
    assert arrivals == pytest.approx(verify_ms(1, 1, 0), abs=1e-6)  # the loop never waits
    ttft = (request["t_first_token"] - request["t_arrival"]) * 1000
    assert ttft == pytest.approx(2 * DELAY_MS + PREFILL_MS, abs=0.1)


def test_a_fused_session_drafts_in_the_cloud_before_each_pass(tmp_path) -> None:
    scenario, profile = mode_scenario(tmp_path, "fused", alpha=1.0, policy="fixed:4")
    events = simulate(scenario, profile)
    (request,) = requests_of(events)
    rounds = rounds_of(events)
    assert request["mode"] == "fused" and request["output_tokens"] == 33
    assert [r["emitted"] for r in rounds] == [5] * 6 + [2]  # the last round meets the budget
    assert [r["drafted"] for r in rounds] == [4] * 6 + [1]
    round_ms = 4 * STEP_MS + verify_ms(1, 5, 0)
    assert [r["verify_ms"] for r in rounds[:6]] == pytest.approx([round_ms] * 6)
    assert np.diff([r["t_recv"] * 1000 for r in rounds[:6]]) == pytest.approx(round_ms)
    ttft = (request["t_first_token"] - request["t_arrival"]) * 1000
    assert ttft == pytest.approx(2 * DELAY_MS + 2 * PREFILL_MS, abs=0.1)  # target and draft


def test_an_edge_only_request_is_the_draft_decoding_alone(tmp_path) -> None:
    scenario, profile = mode_scenario(tmp_path, "edge-only", requests=2)
    events = simulate(scenario, profile)
    assert not rounds_of(events) and not [e for e in events if e["event"] == "batch"]
    for request in requests_of(events):
        assert request["mode"] == "edge-only" and request["output_tokens"] == 33
        ttft = (request["t_first_token"] - request["t_arrival"]) * 1000
        tpot = (request["t_done"] - request["t_first_token"]) * 1000 / 32
        assert ttft == pytest.approx(PREFILL_MS + STEP_MS) and tpot == pytest.approx(STEP_MS)


def test_streaming_rows_fill_what_the_verifications_leave_of_a_batch(tmp_path) -> None:
    """A dsd edge and two cloud edges on one server of at most two rows: a batch holds the
    dsd edge's verification whenever one waits, and one cloud row beside it."""
    scenario, profile = mode_scenario(tmp_path, "dsd", alpha=1.0, policy="fixed:4")
    raw = yaml.safe_load(scenario.read_text())
    raw["cloud"]["batching"]["max_batch"] = 2
    raw["edges"].append({**raw["edges"][0], "name": "c", "count": 2, "mode": "cloud"})
    scenario.write_text(yaml.safe_dump(raw))
    events = simulate(scenario, profile)
    batches = [e for e in events if e["event"] == "batch"]
    verifying = [b for b in batches if b["tokens"] == 5 + 1]
    assert len(verifying) == 6  # of 33 tokens: the prefill's, 6 rounds of 5, one of 2
    assert all(b["batch_size"] == 2 for b in verifying)
    assert all(b["verify_ms"] == pytest.approx(verify_ms(2, 5, 0)) for b in verifying)
    # a cloud row alone, two of them, or beside a verification of 4 drafts or of the last 1
    assert {b["tokens"] for b in batches} == {1, 2, 6, 3}
    dsd = [r for r in rounds_of(events) if r["edge"] == "e1"]
    assert dsd and all(r["batch_size"] == 2 for r in dsd)
    # the row left beside a verification goes to the longer-open cloud session, c1
    sent = {
        edge: {r["server_t_send"] for r in rounds_of(events) if r["edge"] == edge}
        for edge in ("c1", "c2")
    }
    for batch in verifying:
        assert batch["t"] in sent["c1"] and batch["t"] not in sent["c2"]


def test_a_stream_s_tokens_arrive_in_order_when_the_delay_drops(tmp_path) -> None:
    """The link's delay falls from 400 to 10 ms while tokens stream: the later ones would
    overtake, but a connection delivers in order (TCP holds them until the gap is filled)."""
    nan = np.full(2, np.nan)
    series = {"rate_mbps": nan, "delay_ms": np.array([400.0, 10.0]), "jitter_ms": nan}
    series["loss_pct"] = nan
    trace = tmp_path / "drop.csv"
    write_trace(LinkTrace(np.array([0.0, 1.0]), 60.0, series, dict(series)), trace)
    scenario, profile = mode_scenario(tmp_path, "cloud", tokens=60)
    raw = yaml.safe_load(scenario.read_text())
    raw["edges"][0]["link"] = {"trace": str(trace)}
    scenario.write_text(yaml.safe_dump(raw))
    events = simulate(scenario, profile)
    (request,) = requests_of(events)
    assert request["output_tokens"] == 60 and not request.get("error")
    sent = [r["server_t_send"] for r in rounds_of(events)]
    received = [r["t_recv"] for r in rounds_of(events)]
    assert sent == sorted(sent) and received == sorted(received)
    held = [r for r, s in zip(received, sent, strict=True) if r - s > 0.3]  # sent before 1 s
    assert held and received.count(received[len(held) - 1]) > 1  # released together


def test_the_batching_policy_runs_at_once_while_a_stream_decodes() -> None:
    policy = BatchingPolicy(max_batch=4, max_wait_ms=50.0)
    assert policy.should_dispatch(0, 3, 0.0, streaming=1)
    assert not policy.should_dispatch(1, 3, 0.0)
    assert policy.streaming_rows(3, 5) == 1 and policy.streaming_rows(4, 5) == 0
    assert policy.streaming_rows(0, 2) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "offline"}, "mode: must be one of dsd, cloud, fused, edge-only"),
        ({"mode": "fused", "policy": "awc"}, "fused group drafts a fixed window"),
    ],
)
def test_a_bad_mode_is_refused_with_its_key(tmp_path, change, message) -> None:
    scenario, _ = mode_scenario(tmp_path, "dsd")
    raw = yaml.safe_load(scenario.read_text())
    raw["edges"][0].update(change)
    scenario.write_text(yaml.safe_dump(raw))
    with pytest.raises(ScenarioError, match=message):
        load_scenario(scenario)


def test_fused_groups_give_the_cloud_its_draft_model_and_must_agree(tmp_path) -> None:
    scenario, _ = mode_scenario(tmp_path, "fused")
    assert load_scenario(scenario).cloud.draft == "int8"
    raw = yaml.safe_load(scenario.read_text())
    raw["edges"].append({**raw["edges"][0], "name": "f", "draft": "bf16"})
    scenario.write_text(yaml.safe_dump(raw))
    with pytest.raises(ScenarioError, match="the cloud holds one"):
        load_scenario(scenario)
    raw["cloud"]["draft"] = "int8"
    scenario.write_text(yaml.safe_dump(raw))
    with pytest.raises(ScenarioError, match="fused group f drafts bf16, the cloud int8"):
        load_scenario(scenario)


@pytest.mark.root
def test_every_mode_runs_in_the_emulator_and_the_cloud_verified_ones_agree(tmp_path) -> None:
    """One emulation, one edge per mode, the tiny pair: greedy dsd, cloud and fused all give
    the target's text (the cloud batches the streaming rows beside the verifications), and
    the edge-only edge sends nothing over its link."""
    link = {"constant": {"delay_ms": 5, "rate_mbps": 100}}
    scenario = {
        "name": "modes",
        "seed": 3,
        "cloud": {"model": "tiny", "cpu": 1.0},
        "edges": [
            {"name": name, "draft": "perturbed:0.1", "cpu": 0.2, "mode": mode, "link": link}
            for name, mode in (("d", "dsd"), ("c", "cloud"), ("f", "fused"), ("o", "edge-only"))
        ],
        "workload": {"requests_per_edge": 2, "max_new_tokens": 24},
    }
    path = tmp_path / "modes.yaml"
    path.write_text(yaml.safe_dump(scenario))
    try:
        result = run_script(
            "run_topology.py", "--scenario", str(path), "--out", str(tmp_path), "--no-sim"
        )
    finally:
        cleanup()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (out,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    texts = {name: printed_outputs(out / f"{name}1.txt") for name in "dcfo"}
    assert texts["d"] and texts["d"] == texts["c"] == texts["f"] and texts["o"]
    for name, mode in (("d", "dsd"), ("c", "cloud"), ("f", "fused"), ("o", "edge-only")):
        events = read_events(out / f"{name}1.jsonl")
        requests = [e for e in events if e["event"] == "request"]
        assert [r["mode"] for r in requests] == [mode] * 2
        assert all(r["output_tokens"] == 24 and not r.get("error") for r in requests)
        rounds = [e for e in events if e["event"] == "round"]
        assert (not rounds) == (mode == "edge-only")
    fused = [e for e in read_events(out / "f1.jsonl") if e["event"] == "round"]
    assert max(r["drafted"] for r in fused) == 4
    batches = [e for e in read_events(out / "cloud.jsonl") if e["event"] == "batch"]
    assert max(b["batch_size"] for b in batches) >= 2


def printed_outputs(path: Path) -> str:
    """What an edge printed after it was told to start: its requests' texts."""
    return path.read_text().partition("draft: ready")[2].strip()
