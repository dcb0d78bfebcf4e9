"""The capacity experiment: its measures per point, capacity and crossover, and the script
end to end in the simulator (a synthetic profile, so that the figures are known)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from cli import run_script
from test_sim import write_scenario

from emulator.experiments.capacity import (
    MODES,
    SLO_SHARE,
    CapacitySweep,
    Point,
    capacity_edges,
    crossover_edges,
)


def point(mode: str, edges: int, goodput: float, share: float) -> Point:
    return Point(mode, edges, "sim", "fixed:4", 4, 0, goodput, goodput, share, 1, 1, 1, 0.5)


def test_capacity_is_the_most_edges_kept_within_the_slos() -> None:
    points = [point("cloud", n, 1.0, s) for n, s in ((1, 1.0), (2, SLO_SHARE), (4, 0.5))]
    assert capacity_edges(points) == 2
    assert capacity_edges([point("cloud", 1, 1.0, 0.2)]) is None


def test_the_crossover_is_where_dsd_stays_ahead_of_cloud_only() -> None:
    cloud = [point("cloud", n, g, 1.0) for n, g in ((1, 9.0), (2, 9.0), (4, 9.0), (8, 9.0))]
    awc = [point("dsd-awc", n, g, 1.0) for n, g in ((1, 5.0), (2, 10.0), (4, 8.0), (8, 12.0))]
    fixed = [point("dsd-best-fixed", n, g, 1.0) for n, g in ((1, 5.0), (2, 8.0), (4, 9.5))]
    by_mode = {"cloud": cloud, "dsd-awc": awc, "dsd-best-fixed": fixed}
    assert crossover_edges(by_mode) == 2  # the better DSD mode: ahead at 2 (AWC), 4 (fixed), 8
    by_mode["dsd-best-fixed"][-1] = point("dsd-best-fixed", 4, 8.5, 1.0)
    assert crossover_edges(by_mode) == 8  # behind at 4 now: ahead from 8 only
    by_mode["dsd-awc"][-1] = point("dsd-awc", 8, 8.0, 1.0)
    assert crossover_edges(by_mode) is None


def capacity_base(tmp_path: Path) -> tuple[Path, Path]:
    """Verification that costs per row, fast drafts, a far cloud: cloud-only wins with one
    edge, and DSD's five tokens a row win once the rows fill the batches."""
    scenario, profile = write_scenario(
        tmp_path,
        {"constant": {"delay_ms": 60, "rate_mbps": 100}},
        requests=3,
        tokens=40,
        alpha=0.9,
        step_ms=2.0,
        verify=lambda batch, tokens, context: 10.0 + 12.0 * batch + 2.0 * tokens,
    )
    raw = yaml.safe_load(scenario.read_text())
    raw["workload"]["arrival"] = {"poisson_per_s": 0.5}
    scenario.write_text(yaml.safe_dump(raw))
    return scenario, profile


def test_the_capacity_sweep_in_the_simulator_end_to_end(tmp_path) -> None:
    scenario, profile = capacity_base(tmp_path)
    result = run_script(
        "capacity.py",
        "--scenario",
        str(scenario),
        "--link",
        "scenario",
        "--profile",
        str(profile),
        "--edges",
        "1,4,16",
        "--slo-tpot-ms",
        "150",
        "--out",
        str(tmp_path / "out"),
        "--json",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    out = Path(summary["results_dir"])
    assert {"capacity.json", "capacity.md", "throughput.png", "tpot.png"} <= {
        p.name for p in out.iterdir()
    }
    modes = summary["sim"]["modes"]
    assert set(modes) == {
        "dsd-awc",
        "dsd-awc-server",
        "dsd-best-fixed",
        "cloud",
        "fused-best-fixed",
    }
    ratios = summary["sim"]["adaptive_vs_best_fixed"]
    for name in ("dsd-awc", "dsd-awc-server"):
        for p in modes[name]["points"]:
            best = next(b for b in modes["dsd-best-fixed"]["points"] if b["edges"] == p["edges"])
            assert ratios[name][str(p["edges"])]["goodput"] == pytest.approx(
                p["goodput_tok_s"] / best["goodput_tok_s"]
            )
    for mode in modes.values():
        assert [p["edges"] for p in mode["points"]] == [1, 4, 16]
        for p in mode["points"]:
            assert p["requests"] + p["failed"] == 3 * p["edges"]
            assert 0 < p["utilisation"] <= 1 and p["throughput_tok_s"] > 0
    best = {p["policy"] for p in modes["dsd-best-fixed"]["points"]}
    assert best <= {f"fixed:{g}" for g in range(1, 9)}
    goodput = {name: [p["goodput_tok_s"] for p in m["points"]] for name, m in modes.items()}
    assert goodput["cloud"][0] > goodput["dsd-best-fixed"][0]  # one edge: cloud-only wins
    assert goodput["dsd-best-fixed"][-1] > goodput["cloud"][-1]  # sixteen: DSD does
    assert summary["sim"]["crossover_edges"] in (4, 16)
    crossover = summary["sim"]["crossover_edges"]
    assert f"DSD overtakes cloud-only from {crossover} edges" in result.stdout


def test_a_resumed_sweep_keeps_its_emulated_points_and_its_options(tmp_path) -> None:
    """An emulated point of the sweep resumed is kept, not run again, while its policy is
    still the simulator's choice; the sweep's options come back as it ran them."""
    scenario, profile = capacity_base(tmp_path)
    out = tmp_path / "sweep"
    sweep = CapacitySweep(scenario, out, [1, 2], seed=5, profile=str(profile))
    cloud = next(spec for spec in MODES if spec.name == "cloud")
    done = Point("cloud", 2, "emu", "fixed:4", 6, 0, 9.0, 8.0, 1.0, 1, 1, 1, 0.5, sim={"x": 1})
    sweep.keep(done)
    resumed = CapacitySweep.resumed(out)
    assert (resumed.edge_counts, resumed.seed, resumed.profile) == ([1, 2], 5, str(profile))
    assert resumed.raw["edges"][0]["link"] == sweep.raw["edges"][0]["link"]
    assert resumed.document()["points"] == [asdict(done)]  # kept before it is reached

    def must_not_run(scenario: Path, out: Path) -> None:
        raise AssertionError("a kept point ran again")

    assert resumed.emulate(cloud, 2, must_not_run) == done
    with pytest.raises(RuntimeError, match="ran"):
        resumed.emulate(cloud, 1, lambda s, o: (_ for _ in ()).throw(RuntimeError("ran")))


def test_a_sweep_another_machine_ran_is_not_resumed(tmp_path) -> None:
    scenario, profile = capacity_base(tmp_path)
    out = tmp_path / "sweep"
    CapacitySweep(scenario, out, [1], profile=str(profile)).keep(point("cloud", 1, 1.0, 1.0))
    document = json.loads((out / "partial.json").read_text())
    document["machine"] = "0123456789ab"
    (out / "partial.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="ran on machine 0123456789ab"):
        CapacitySweep.resumed(out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--edges", "4"], "drop --edges"),
        ([], "no partial.json or capacity.json there"),
    ],
)
def test_a_bad_resume_is_one_line(tmp_path, extra, message) -> None:
    result = run_script("capacity.py", "--resume", str(tmp_path), *extra)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_an_unknown_recorded_link_is_one_line(tmp_path) -> None:
    result = run_script("capacity.py", "--link", "moon", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("capacity: error: --link moon: no such recorded link")
    assert "Traceback" not in result.stderr
