"""The capacity experiment: its measures per point, capacity and crossover, and the script
end to end in the simulator (a synthetic profile, so that the figures are known)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli import run_script
from test_sim import write_scenario

from emulator.capacity import SLO_SHARE, Point, capacity_edges, crossover_edges


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


def test_an_unknown_recorded_link_is_one_line(tmp_path) -> None:
    result = run_script("capacity.py", "--link", "moon", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("capacity: error: --link moon: no such recorded link")
    assert "Traceback" not in result.stderr
