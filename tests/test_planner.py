"""The capacity planner: its points are the simulator's (a point equals its case simulated
directly), it stops a mode past its capacity, local processes and a local Ray instance give
the same plan, and its command says what is wrong in one line."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from cli import run_script
from test_sim import synthetic_profile

from emulator.experiments.capacity import MODES, Slo, point_metrics
from emulator.experiments.planner import (
    CapacityPlan,
    PlanCase,
    case_raw,
    local_runner,
    modes_for,
    past_capacity,
    plan_settings,
    ray_runner,
)
from emulator.scenario import Overrides, load_scenario
from emulator.sim.simulation import SimOptions, Simulation
from runtime.events import EventLog


def small_cloud(folder: Path) -> tuple[Path, Path]:
    """One edge group and a target whose verification grows with the batch's tokens, so
    that a few edges fill it; a profile for every pair."""
    profile = folder / "profile.json"
    profile.write_text(
        json.dumps(synthetic_profile(alpha=0.8, step_ms=8.0, verify=lambda b, t, c: 10 + 4 * b * t))
    )
    scenario = {
        "name": "small",
        "seed": 2,
        "cloud": {"batching": {"max_batch": 8, "max_wait_ms": 5}},
        "edges": [{"name": "e", "policy": "fixed:4", "link": {"constant": {"delay_ms": 10}}}],
        "workload": {"requests_per_edge": 3, "max_new_tokens": 40},
        "slo": {"ttft_ms": 400, "tpot_ms": 40},
    }
    path = folder / "small.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path, profile


def plan_of(folder: Path, runner, edges=(1, 2, 4, 8, 16, 32, 64)) -> CapacityPlan:
    folder.mkdir(parents=True, exist_ok=True)
    path, profile = small_cloud(folder)
    settings = plan_settings(
        path, folder / "scenarios", networks=["scenario"], profile=str(profile)
    )
    plan = CapacityPlan(path, folder, settings, edges, (2, 4), MODES)
    plan.run(runner, say=lambda _: None)
    return plan


def test_a_planned_point_is_its_case_simulated(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, local_runner(1), edges=(2, 8))
    settings = plan.settings
    assert settings.slo == Slo(400, 40)  # the scenario's own objectives
    for point in plan.points:
        mode = next(spec.mode for spec in MODES if spec.name == point.mode)
        case = PlanCase(point.network, point.mode, mode, point.policy, point.edges)
        path = tmp_path / "direct.yaml"
        path.write_text(yaml.safe_dump(case_raw(settings, case)))
        log = EventLog(None, "sim", keep=True)
        scenario = load_scenario(path, Overrides(edges=point.edges))
        Simulation(scenario, log, SimOptions(profile=settings.profile)).run()
        direct = point_metrics(log.events, settings.slo)
        assert point.goodput_tok_s == pytest.approx(direct["goodput_tok_s"]), point
        assert point.tpot_p50_ms == pytest.approx(direct["tpot_p50_ms"]), point
    fixed = [p for p in plan.points if p.mode == "dsd-best-fixed"]
    assert all(set(p.tried) == {"fixed:2", "fixed:4"} for p in fixed)
    assert all(p.goodput_tok_s == max(g or 0.0 for g in p.tried.values()) for p in fixed)


def test_a_mode_is_swept_until_past_its_capacity(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, local_runner(2))
    document = plan.document()
    modes = document["networks"]["scenario"]["modes"]
    dsd = modes["dsd-best-fixed"]
    assert dsd["capacity_edges"] is not None and dsd["capacity_edges"] < 64
    stopped = [name for name, m in modes.items() if m["stopped_after"] is not None]
    assert stopped, "the small cloud saturates: some mode must stop before 64 edges"
    for name in stopped:
        points = [p for p in plan.points if p.mode == name]
        assert max(p.edges for p in points) == modes[name]["stopped_after"]
        assert past_capacity(points)
        assert not past_capacity(points[:-1])
    assert (tmp_path / "partial.json").is_file()


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (pip install -e '.[plan]')",
)
@pytest.mark.slow
def test_local_processes_and_a_local_ray_instance_plan_alike(tmp_path: Path) -> None:
    import ray

    edges = (2, 8)
    one = plan_of(tmp_path / "one", local_runner(1), edges)
    two = plan_of(tmp_path / "two", local_runner(2), edges)
    try:
        on_ray = plan_of(tmp_path / "ray", ray_runner("local"), edges)
    finally:
        ray.shutdown()

    def measures(plan: CapacityPlan) -> list[dict]:
        return sorted(
            ({k: v for k, v in asdict(p).items() if k != "wall_s"} for p in plan.points),
            key=lambda p: (p["mode"], p["edges"]),
        )

    assert measures(one) == measures(two) == measures(on_ray)


def test_the_planner_command_end_to_end(tmp_path: Path) -> None:
    path, profile = small_cloud(tmp_path)
    done = run_script(
        "plan_capacity.py",
        str(path),
        "--profile",
        str(profile),
        "--edges",
        "1,4,16",
        "--gammas",
        "2,4",
        "--networks",
        "scenario",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    network = summary["networks"]["scenario"]
    assert set(network["modes"]) == {spec.name for spec in MODES}
    assert "crossover_edges" in network and summary["wall_s"] > 0
    assert summary["modelled"] == []  # a profile measured (here: given), nothing modelled
    assert all("capacity_edges" in m and m["points"] for m in network["modes"].values())
    out = Path(summary["results_dir"])
    for name in ("plan.md", "plan.json", "goodput.png", "tpot.png"):
        assert (out / name).is_file(), name
    assert "| scenario |" in (out / "plan.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.yaml"], "no such scenario file"),
        (["{scenario}", "--targets", "4"], "--targets needs --target"),
        (["{scenario}", "--networks", "moon"], "no such network"),
        (["{scenario}", "--target", "x@tpu"], "unknown GPU"),
        (["{scenario}", "--edges", "ten"], "expected LOW..HIGH"),
    ],
)
def test_planner_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    path, _ = small_cloud(tmp_path)
    done = run_script(
        "plan_capacity.py", *[a.format(scenario=path) for a in args], "--out", str(tmp_path)
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_fixed_round_plan_runs_the_fixed_windows_and_credits_unemitted_tokens(
    tmp_path: Path,
) -> None:
    """Under DSD-Sim's fixed rounds only modes with a fixed window run; at α = 0.8 a round
    of γ = 4 emits about 3.4 tokens, so ending after ceil(L / 4) rounds with L credited
    reads as more throughput than the token budget gives."""
    assert {spec.name for spec in modes_for(True)} == {
        "dsd-best-fixed",
        "cloud",
        "fused-best-fixed",
    }
    path, profile = small_cloud(tmp_path)
    plans = {}
    for fixed in (False, True):
        settings = plan_settings(
            path,
            tmp_path / f"s{fixed}",
            networks=["scenario"],
            profile=str(profile),
            fixed_rounds=fixed,
        )
        plan = CapacityPlan(path, tmp_path, settings, (2,), (4,), modes_for(fixed))
        plan.run(local_runner(1), say=lambda _: None)
        plans[fixed] = {p.mode: p for p in plan.points}
    assert set(plans[True]) == {"dsd-best-fixed", "cloud", "fused-best-fixed"}
    ours, theirs = plans[False]["dsd-best-fixed"], plans[True]["dsd-best-fixed"]
    assert theirs.throughput_tok_s > 1.1 * ours.throughput_tok_s
    assert plans[True]["cloud"].throughput_tok_s == pytest.approx(
        plans[False]["cloud"].throughput_tok_s
    )
