"""Models on devices this machine cannot run: VIDUR's GPU tables read back against an
independent reading of the CSV, the modelled parts against their closed forms, device specs,
scenario acceptance, and pairs put together from their parts and simulated."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml
from cli import run_script
from test_sim import rounds_of, synthetic_profile

from emulator.scenario import AcceptanceSpec, ScenarioError, load_scenario
from emulator.sim.calibration import CalibrationError, PairProfile
from emulator.sim.device_profile import composed_profile, draft_part
from emulator.sim.device_spec import parse_device_spec
from emulator.sim.gpu_model import GPUS, GpuModel, attention_ms, lm_head_ms
from emulator.sim.simulation import SimOptions, Simulation
from emulator.sim.vidur import SHARED_VIDUR, ModelShape, VidurError, operator_table
from runtime.events import EventLog

needs_vidur = pytest.mark.skipif(
    not SHARED_VIDUR.is_dir(), reason=f"VIDUR's GPU profiles are absent ({SHARED_VIDUR})"
)
LLAMA_70B_H100 = SHARED_VIDUR / "compute/h100/meta-llama/Llama-2-70b-hf/mlp.csv"
H100_ALL_REDUCE = SHARED_VIDUR / "network/h100_dgx/all_reduce.csv"
# Llama-2-70B's shape as VIDUR profiled it (its vocabulary padded to 32,768)
LLAMA_70B = ModelShape(
    n_head=64, n_kv_head=8, n_embd=8192, n_expanded_embd=28672, vocab_size=32768, layers=80
)


def csv_rows(path: Path, **match: int) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [r for r in csv.DictReader(handle) if all(int(r[k]) == v for k, v in match.items())]


def layer_sum(tokens: int, tp: int) -> float:
    """Every operator's median but the embedding's summed, from the CSV itself (duplicated
    rows averaged)."""
    rows = csv_rows(LLAMA_70B_H100, num_tokens=tokens, num_tensor_parallel_workers=tp)
    assert rows, f"no row at {tokens} tokens, TP {tp}"
    medians = [k for k in rows[0] if k.endswith(".median") and k != "time_stats.emb.median"]
    assert len(medians) == 9
    return statistics.fmean(sum(float(r[k]) for k in medians) for r in rows)


@needs_vidur
@pytest.mark.parametrize(("tokens", "tp"), [(1, 4), (64, 4), (1, 1), (512, 2), (2048, 8)])
def test_layer_time_is_the_sum_of_the_operators_medians(tokens: int, tp: int) -> None:
    table = operator_table("h100", "llama-2-70b")
    assert table.layer_ms(tokens, tp) == pytest.approx(layer_sum(tokens, tp), rel=1e-12)


@needs_vidur
def test_the_provenance_figures_and_interpolation_between_profiled_counts() -> None:
    table = operator_table("h100", "llama-2-70b")
    assert table.layer_ms(1, 4) == pytest.approx(0.179, abs=5e-4)
    assert table.layer_ms(64, 4) == pytest.approx(0.191, abs=5e-4)
    # 12 tokens lie between the profiled 8 and 16: linear between them
    assert table.layer_ms(12, 4) == pytest.approx((layer_sum(8, 4) + layer_sum(16, 4)) / 2)
    assert table.shape == LLAMA_70B


@needs_vidur
def test_a_forward_is_measured_layers_embedding_all_reduces_and_modelled_parts() -> None:
    model = GpuModel("llama-2-70b", "h100", 4)
    rows = [(5, 300)] * 3  # three rows verifying γ = 4
    forward = model.forward(rows)
    tokens = 15
    emb = statistics.fmean(
        float(r["time_stats.emb.median"])
        for r in csv_rows(LLAMA_70B_H100, num_tokens=16, num_tensor_parallel_workers=4)
    )
    emb8 = statistics.fmean(
        float(r["time_stats.emb.median"])
        for r in csv_rows(LLAMA_70B_H100, num_tokens=8, num_tensor_parallel_workers=4)
    )
    size = tokens * 8192 * 2
    reduce_rows = csv_rows(H100_ALL_REDUCE, num_workers=4, devices_per_node=4)
    sizes = sorted({int(r["size"]) for r in reduce_rows})
    low = max(s for s in sizes if s <= size)
    high = min(s for s in sizes if s > size)

    def reduce_at(s: int) -> float:
        return statistics.median(
            float(r["time_stats.all_reduce.median"]) for r in reduce_rows if int(r["size"]) == s
        )

    reduce = reduce_at(low) + (size - low) / (high - low) * (reduce_at(high) - reduce_at(low))
    layer = layer_sum(8, 4) + (tokens - 8) / 8 * (layer_sum(16, 4) - layer_sum(8, 4))
    assert forward.layers_ms == pytest.approx(80 * layer)
    assert forward.embedding_ms == pytest.approx(emb8 + (tokens - 8) / 8 * (emb - emb8))
    assert forward.all_reduce_ms == pytest.approx(2 * 80 * reduce)
    assert forward.attention_ms == pytest.approx(attention_ms(LLAMA_70B, GPUS["h100"], 4, rows))
    assert forward.lm_head_ms == pytest.approx(lm_head_ms(LLAMA_70B, GPUS["h100"], 4, tokens))
    parts = (
        forward.layers_ms,
        forward.all_reduce_ms,
        forward.embedding_ms,
        forward.attention_ms,
        forward.lm_head_ms,
    )
    assert forward.total_ms == pytest.approx(sum(parts))
    # verifying 5 tokens costs about what decoding one does on this GPU (memory-bound)
    assert model.forward([(5, 300)]).total_ms < 1.1 * model.forward([(1, 300)]).total_ms


def test_attention_is_kv_bytes_at_bandwidth_when_decoding() -> None:
    # one token over 1,000 cached: 1,001 tokens x (K and V: 2 x 8 heads x 128 x 2 bytes)
    # per layer, at 3.35 TB/s, split over 4 GPUs, 80 layers
    expected = 1001 * 4096 / 3.35e12 / 4 * 80 * 1000
    assert attention_ms(LLAMA_70B, GPUS["h100"], 4, [(1, 1000)]) == pytest.approx(expected)
    assert expected == pytest.approx(0.02448, rel=1e-3)


def test_attention_is_causal_multiply_adds_at_peak_when_prefilling() -> None:
    # 4,096 prompt tokens: 4096 x 4097 / 2 (query, key) pairs x 4 x 64 heads x 128
    pairs = 4096 * 4097 // 2
    expected = 4 * 64 * 128 * pairs / 989e12 / 4 * 80 * 1000
    assert attention_ms(LLAMA_70B, GPUS["h100"], 4, [(4096, 0)]) == pytest.approx(expected)
    assert expected == pytest.approx(5.56, rel=1e-2)


def test_lm_head_reads_its_weights_or_computes_whichever_is_slower() -> None:
    weights = 32768 * 8192 * 2
    assert lm_head_ms(LLAMA_70B, GPUS["a100"], 1, 1) == pytest.approx(weights / 2.0e12 * 1000)
    many = 2 * 4096 * 32768 * 8192 / 312e12 * 1000
    assert lm_head_ms(LLAMA_70B, GPUS["a100"], 1, 4096) == pytest.approx(many)


@needs_vidur
def test_missing_profiles_are_refused_with_what_exists() -> None:
    with pytest.raises(VidurError, match=r"profiled: .*llama-2-7b"):
        GpuModel("llama-9-1b", "h100")
    with pytest.raises(VidurError, match="no all-reduce on a40"):
        GpuModel("llama-2-7b", "a40", 2)


def test_an_absent_vidur_folder_is_said(tmp_path: Path) -> None:
    with pytest.raises(VidurError, match="absent"):
        GpuModel("llama-2-7b", "h100", 1, tmp_path / "vidur")


def test_device_specs_parse_or_say_why() -> None:
    spec = parse_device_spec("llama-2-70b@h100:tp4")
    assert (spec.model, spec.gpu, spec.tp) == ("llama-2-70b", "h100", 4)
    assert parse_device_spec("llama-2-7b@a40").tp == 1
    timed = parse_device_spec("llama-3.2-1b@25ms,prefill:1.5ms")
    assert (timed.step_ms, timed.prefill_ms_per_token) == (25.0, 1.5)
    assert parse_device_spec("phone@40ms").prefill_ms_per_token == 40.0
    for bad, why in [
        ("llama@tpu", "unknown GPU"),
        ("llama@h100:tp3", "1, 2, 4 or 8"),
        ("llama@h100:4", "MODEL@GPU"),
        ("llama@0ms", "> 0"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_device_spec(bad)


def test_a_timed_device_drafts_at_its_given_times() -> None:
    part = draft_part(parse_device_spec("phone@25ms,prefill:2ms"))
    profile = composed_from_parts(part)
    assert profile.draft_ms(4, 300) == pytest.approx(100.0)
    assert profile.draft_ms(4, 300, after_accept=True) == pytest.approx(100.0)
    assert profile.draft_prefill_ms(100) == pytest.approx(200.0)


def composed_from_parts(draft: dict) -> PairProfile:
    data = synthetic_profile()
    data.update(draft)
    return PairProfile(data, "test")


def write(tmp_path: Path, cloud: dict, group: dict, name: str = "s.yaml") -> Path:
    scenario = {
        "name": "gpu",
        "cloud": cloud,
        "edges": [{"name": "e", "count": 2, "link": {"constant": {"delay_ms": 5}}, **group}],
        "workload": {"requests_per_edge": 2, "max_new_tokens": 40},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(scenario))
    return path


def test_scenario_acceptance_forms_and_errors(tmp_path: Path) -> None:
    cloud = {"model": "llama-2-70b@h100:tp4"}
    fallback = {"first": 0.92, "decay": 0.96, "source": "DSD-Sim fallback"}
    group = load_scenario(write(tmp_path, cloud, {"acceptance": fallback})).edges[0]
    assert group.acceptance is not None
    assert group.acceptance.per_position(3) == pytest.approx([0.92, 0.92 * 0.96, 0.92 * 0.96**2])
    assert group.acceptance.source == "DSD-Sim fallback"
    constant = {"alpha": 0.414, "source": "trained on CNN/DM"}
    assert load_scenario(write(tmp_path, cloud, {"acceptance": constant})).edges[0].acceptance == (
        AcceptanceSpec((0.414,), "trained on CNN/DM")
    )
    for bad, why in [
        ({"alpha": 0.5}, "source: is required"),
        ({"alpha": 0.5, "first": 0.9, "decay": 0.9, "source": "x"}, "give one of"),
        ({"first": 0.9, "source": "x"}, "go together"),
        ({"per_position": [0.9, 1.5], "source": "x"}, "numbers in"),
        ({"alpha": 1.2, "source": "x"}, r"alpha: must be in"),
    ]:
        with pytest.raises(ScenarioError, match=why):
            load_scenario(write(tmp_path, cloud, {"acceptance": bad}))
    with pytest.raises(ScenarioError, match=r"cloud\.model: .*unknown GPU"):
        load_scenario(write(tmp_path, {"model": "x@tpu"}, {}))
    with pytest.raises(ScenarioError, match="a target runs on a GPU"):
        load_scenario(write(tmp_path, {"model": "x@20ms"}, {}))
    with pytest.raises(ScenarioError, match="replay a draft profiled here"):
        load_scenario(write(tmp_path, cloud, {"draft": "replay:phone@20ms"}))


def test_only_the_simulator_runs_a_device_scenario(tmp_path: Path) -> None:
    scenario = load_scenario(
        write(tmp_path, {"model": "llama-2-70b@h100:tp4"}, {"draft": "phone@25ms"})
    )
    assert "cannot run" in (scenario.simulator_only() or "")
    here = load_scenario(write(tmp_path, {}, {}))
    assert here.simulator_only() is None


def test_a_pair_no_one_profiled_needs_its_acceptance() -> None:
    def local(target: str, draft: str) -> PairProfile:
        return PairProfile(synthetic_profile(), "local")

    with pytest.raises(CalibrationError, match="give the edge group's acceptance"):
        composed_profile("smollm2", "phone@25ms", None, local)
    given = AcceptanceSpec((0.6,), "a guess")
    profile = composed_profile("smollm2", "phone@25ms", given, local)
    assert profile.acceptance[:2] == [0.6, 0.6]
    assert profile.draft_ms(3, 100) == pytest.approx(75.0)
    assert profile.verify_ms(1, 5, 256) == pytest.approx(50.0)  # the local target's
    assert profile.record()["acceptance_source"] == "a guess"
    assert profile.record()["modelled"] == []


@needs_vidur
def test_a_gpu_pair_simulates_at_its_modelled_forward_times(tmp_path: Path) -> None:
    """Every round's verification is priced at the GPU model's forward of its batch, and
    with every draft accepted each round emits γ + 1 tokens."""
    path = write(
        tmp_path,
        {"model": "llama-2-70b@h100:tp4", "batching": {"max_batch": 1}},
        {"draft": "llama-2-7b@a40", "acceptance": {"alpha": 1.0, "source": "test"}},
    )
    log = EventLog(None, "sim", keep=True)
    simulation = Simulation(load_scenario(path), log, SimOptions())
    simulation.run()
    record = simulation.calibration()["llama-2-7b@a40"]
    assert record["acceptance_source"] == "test"
    assert any("attention" in part for part in record["modelled"])
    target = GpuModel("llama-2-70b", "h100", 4)
    draft = GpuModel("llama-2-7b", "a40", 1)
    rounds = rounds_of(log.events)
    assert rounds
    for r in rounds:
        before = r["context_len"] - r["emitted"]  # the cache the round was verified over
        expected = target.forward([(r["gamma"] + 1, before - 1)]).total_ms
        assert r["verify_ms"] == pytest.approx(expected, rel=1e-7), r
        # one token fewer costs 2.5e-5 of it: the comparison above tells widths apart
        assert target.forward([(r["gamma"], before - 1)]).total_ms != pytest.approx(
            expected, rel=1e-7
        )
    full = [r for r in rounds if r["gamma"] == 4 and r["accepted"] == 4]
    assert full and all(r["emitted"] == 5 for r in full)
    step = draft.forward([(1, 512)]).total_ms
    assert 15.0 < step < 30.0  # a 7B model's weights at the A40's bandwidth, about
    json.dumps(record)  # results can carry it


@needs_vidur
def test_gpu_times_prints_each_part_and_says_what_is_modelled() -> None:
    done = run_script("gpu_times.py", "llama-2-70b@h100:tp4", "--context", "100", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    decode = next(r for r in rows if r["shape"] == "decode 1 row")
    expected = GpuModel("llama-2-70b", "h100", 4).forward([(1, 100)])
    assert decode["total_ms"] == pytest.approx(expected.total_ms)
    assert "modelled, not measured" in done.stdout
    bad = run_script("gpu_times.py", "phone@20ms")
    assert bad.returncode == 2 and "MODEL@GPU" in bad.stderr and "Traceback" not in bad.stderr


@needs_vidur
def test_a_draft_as_profiled_here_drafts_for_a_gpu_target() -> None:
    """An edge group drafting on this machine (its profiled times) for a target on a GPU:
    the draft's times are the local profile's, the verification the GPU model's."""

    def local(target: str, draft: str) -> PairProfile:
        assert (target, draft) == ("smollm2", "int8")  # the draft's own pair, run here
        return PairProfile(synthetic_profile(step_ms=10.0), "local")

    given = AcceptanceSpec((0.7,), "a guess")
    profile = composed_profile("llama-2-70b@h100:tp4", "int8", given, local)
    assert profile.draft_ms(4, 256) == pytest.approx(40.0)
    expected = GpuModel("llama-2-70b", "h100", 4).forward([(5, 512)] * 4).total_ms
    assert profile.verify_ms(4, 5, 512) == pytest.approx(expected)
    record = profile.record()
    assert "this machine" in record["devices"]["draft"] and record["modelled"]


def test_the_emulator_refuses_a_device_scenario_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, {"model": "llama-2-70b@h100:tp4"}, {"draft": "phone@25ms"})
    done = run_script("run_topology.py", "--scenario", str(path), "--out", str(tmp_path))
    assert done.returncode == 2
    assert "only the simulator runs it" in done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.glob("*-gpu"))  # no results folder for a refused run
