"""The capacity planner: how many edge devices a cloud serves within the SLOs, with which
mode, on which networks — the simulator's answer at cloud scale (``scripts/plan_capacity.py``).

For each network (the scenario's own links, and each recorded family beside the project put
on every edge group) and each edge count, every mode runs: DSD under AWC, DSD at its best
fixed γ (each of ``gammas`` tried), cloud-only decoding, and fused (draft and target in the
cloud) at its best fixed γ. Capacity, goodput and the crossover are the capacity
experiment's (``emulator.experiments.capacity``). A mode stops being swept on a network once it has
missed the SLOs at two counts in a row with its goodput not rising (past its capacity and
its peak); the counts it skips are said, not guessed.

The points of one edge count run at once, on every local core (processes) or on a Ray
cluster. Each point is a plain function of its case (``run_case``), so either runs it.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emulator.experiments.capacity import (
    MODES,
    SLO_SHARE,
    ModeSpec,
    Point,
    capacity_edges,
    crossover_edges,
    point_metrics,
)
from emulator.paths import SOURCE_TREE
from emulator.scenario import Overrides, Slo, absolute_traces, load_scenario
from emulator.sim.device_spec import is_device_spec, parse_device_spec
from emulator.sim.gpu_model import MODELLED
from emulator.sim.simulation import SimOptions, Simulation
from emulator.traces.recorded import recorded_links
from runtime.events import EventLog

PLAN_EDGES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
PLAN_GAMMAS = (2, 3, 4, 5, 6)
SCENARIO_NETWORK = "scenario"  # the scenario's own links


@dataclass(frozen=True)
class PlanCase:
    """One simulation: a mode at a window policy on a network with so many edges."""

    network: str
    mode: str  # a ModeSpec's name
    edge_mode: str  # the scenario's mode: dsd, cloud or fused
    policy: str
    edges: int


@dataclass
class PlanSettings:
    """What every case shares: the scenario (parsed, its paths absolute), the links of each
    network, the objectives, and where cases write their scenario files."""

    raw: dict[str, Any]
    networks: dict[str, dict[str, Any] | None]  # name -> link for every group (None: own)
    slo: Slo
    folder: str
    requests_per_edge: int | None = None
    fixed_rounds: bool = False
    profile: str | None = None  # one profile file for every pair (default: as the scenario's)


@dataclass
class PlanPoint(Point):
    """One mode at one edge count on one network (a simulated capacity point): the best of
    its cases, with the goodput of each policy tried."""

    network: str = SCENARIO_NETWORK
    wall_s: float = 0.0
    tried: dict[str, float | None] = field(default_factory=dict)  # policy -> goodput


def target_models(raw: dict[str, Any]) -> list[str]:
    """Each target's model in a parsed scenario: its pools', or the cloud's model replicated
    (as ``emulator.scenario`` reads them)."""
    cloud = raw.get("cloud", {})
    pools = cloud.get("targets")
    if isinstance(pools, list):
        return [str(p.get("model", "")) for p in pools for _ in range(int(p.get("count", 1)))]
    return [str(cloud.get("model", "smollm2"))] * int(pools or 1)


def retargeted(raw: dict[str, Any], target: str | None, targets: int | None) -> dict[str, Any]:
    """The scenario with ``targets`` targets of model ``target`` (either kept where None)."""
    raw = copy.deepcopy(raw)
    cloud = raw.setdefault("cloud", {})
    pools = cloud.get("targets")
    count = targets or len(target_models(raw))
    if target is None and targets is None:
        return raw
    if target is None:
        if isinstance(pools, list):
            raise ValueError("--targets with pools of different models needs --target")
        target = cloud.get("model", "smollm2")
    cloud["model"], cloud["targets"] = target, count
    return raw


def redrafted(raw: dict[str, Any], draft: str | None) -> dict[str, Any]:
    """The scenario with every edge group drafting ``draft`` (kept where None)."""
    raw = copy.deepcopy(raw)
    if draft is not None:
        for group in raw["edges"]:
            group["draft"] = draft
    return raw


def fused_draft(raw: dict[str, Any]) -> str:
    """The model a fused cloud drafts with: the first group's draft, on the first target's
    GPU where the targets run on GPUs (a fused draft shares its target's device)."""
    draft = str(raw["edges"][0].get("draft", "int8"))
    target = target_models(raw)[0]
    if is_device_spec(target) and is_device_spec(draft):
        gpu = parse_device_spec(target).gpu
        return f"{parse_device_spec(draft).model}@{gpu}"
    return draft


def on_gpus(raw: dict[str, Any]) -> bool:
    """Whether a scenario names a model on a GPU (priced in part by a model, not a table)."""
    models = [*target_models(raw), raw.get("cloud", {}).get("draft") or ""]
    models += [str(group.get("draft", "")) for group in raw["edges"]]
    return any(is_device_spec(m) and parse_device_spec(m).gpu for m in models)


def case_raw(settings: PlanSettings, case: PlanCase) -> dict[str, Any]:
    """The scenario of one case: its network's links, its mode and policy."""
    raw = copy.deepcopy(settings.raw)
    link = settings.networks[case.network]
    first = raw["edges"][0]
    fused = fused_draft(raw) if case.edge_mode == "fused" else None
    for group in raw["edges"]:
        if link is not None:
            group["link"] = copy.deepcopy(link)
        group["mode"], group["policy"] = case.edge_mode, case.policy
        if fused is not None:
            group["draft"] = fused
            if "acceptance" in first:
                group["acceptance"] = first["acceptance"]
    if fused is not None:
        raw["cloud"]["draft"] = fused
    if settings.requests_per_edge is not None:
        raw.setdefault("workload", {})["requests_per_edge"] = settings.requests_per_edge
    return raw


def run_case(settings: PlanSettings, case: PlanCase) -> tuple[PlanCase, dict[str, Any], float]:
    """Simulate one case: its measures (``emulator.experiments.capacity.point_metrics``) and
    wall time. Only requests and batches are kept in memory: 10,000 edges make millions of
    rounds."""
    started = time.perf_counter()
    name = f"{case.network}-{case.mode}-{case.policy.replace(':', '')}-{case.edges}.yaml"
    path = Path(settings.folder) / name
    path.write_text(yaml.safe_dump(case_raw(settings, case), sort_keys=False), encoding="utf-8")
    scenario = load_scenario(path, Overrides(edges=case.edges))
    log = EventLog(None, "sim", keep=True, flush_each=False, kinds=("request", "batch"))
    options = SimOptions(fixed_rounds=settings.fixed_rounds, profile=settings.profile)
    Simulation(scenario, log, options).run()
    metrics = point_metrics(log.events, settings.slo, targets=scenario.cloud.targets)
    return case, metrics, time.perf_counter() - started


def modes_for(fixed_rounds: bool) -> list[ModeSpec]:
    """The modes to plan: all of them, or under DSD-Sim's fixed rounds (which cut a request
    at its answer over a fixed γ) those with a fixed window."""
    if not fixed_rounds:
        return list(MODES)
    return [spec for spec in MODES if spec.policy is None or spec.policy.startswith("fixed:")]


def cases_of(spec: ModeSpec, network: str, edges: int, gammas: Iterable[int]) -> list[PlanCase]:
    policies = [spec.policy] if spec.policy else [f"fixed:{g}" for g in gammas]
    return [PlanCase(network, spec.name, spec.mode, policy, edges) for policy in policies]


def best_point(results: list[tuple[PlanCase, dict[str, Any], float]]) -> PlanPoint:
    """A mode's point from its cases at one count: the best goodput's (ties: throughput)."""
    case, metrics, _ = max(
        results, key=lambda r: (r[1]["goodput_tok_s"] or 0.0, r[1]["throughput_tok_s"] or 0.0)
    )
    return PlanPoint(
        case.mode,
        case.edges,
        "sim",
        case.policy,
        network=case.network,
        wall_s=sum(r[2] for r in results),
        tried={r[0].policy: r[1]["goodput_tok_s"] for r in results},
        **metrics,
    )


def past_capacity(points: list[PlanPoint]) -> bool:
    """Whether a mode's last two points both missed the SLOs, its goodput not rising."""
    if len(points) < 2:
        return False
    before, last = points[-2], points[-1]
    missed = all((p.slo_share or 0.0) < SLO_SHARE for p in (before, last))
    return missed and (last.goodput_tok_s or 0.0) <= (before.goodput_tok_s or 0.0)


Runner = Callable[[PlanSettings, list[PlanCase]], Iterator[tuple[PlanCase, dict[str, Any], float]]]


def local_runner(workers: int | None = None) -> Runner:
    """Cases in processes, one per local core (or ``workers``), results as they finish."""
    count = workers or len(os.sched_getaffinity(0))

    def run(settings: PlanSettings, cases: list[PlanCase]):
        if count == 1 or len(cases) == 1:
            yield from (run_case(settings, case) for case in cases)
            return
        with ProcessPoolExecutor(max_workers=min(count, len(cases))) as pool:
            yield from pool.map(run_case, [settings] * len(cases), cases)

    return run


def ray_runner(address: str) -> Runner:
    """Cases as Ray tasks on the cluster at ``address`` (``local``: a Ray instance started
    here); Ray is an optional extra (``pip install -e .[plan]``)."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--ray needs Ray: pip install -e '.[plan]'") from exc
    root = str(SOURCE_TREE)
    env = {"env_vars": {"PYTHONPATH": root}}
    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=env)
    remote = ray.remote(run_case)

    def run(settings: PlanSettings, cases: list[PlanCase]):
        pending = [remote.remote(settings, case) for case in cases]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    return run


def plan_settings(
    scenario: Path,
    folder: Path,
    slo: Slo | None = None,
    target: str | None = None,
    targets: int | None = None,
    draft: str | None = None,
    networks: list[str] | None = None,
    requests_per_edge: int | None = None,
    fixed_rounds: bool = False,
    profile: str | None = None,
) -> PlanSettings:
    """The plan's settings from its scenario and options, checked by loading the scenario
    as planned (a bad option or file fails here, in one line, before any simulation);
    the SLOs are ``slo``, else the scenario's, else the capacity experiment's."""
    if not scenario.is_file():
        raise ValueError(f"{scenario}: no such scenario file")
    raw = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("edges"), list) or not raw["edges"]:
        raise ValueError(f"{scenario}: not a scenario (no edge groups)")
    raw = redrafted(retargeted(absolute_traces(raw, scenario.parent), target, targets), draft)
    folder.mkdir(parents=True, exist_ok=True)
    checked = folder / "planned.yaml"
    checked.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    own = load_scenario(checked).slo
    return PlanSettings(
        raw,
        networks_for(networks),
        slo or own or Slo(),
        str(folder),
        requests_per_edge,
        fixed_rounds,
        profile,
    )


def networks_for(names: list[str] | None) -> dict[str, dict[str, Any] | None]:
    """The networks to plan on: the scenario's own links and each recorded family (all of
    them by default, those beside the project); an unknown name is refused with the known."""
    recorded = recorded_links()
    known: dict[str, dict[str, Any] | None] = {SCENARIO_NETWORK: None, **recorded}
    if names is None:
        return known
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(known) + ("" if recorded else " (../shared/traces is absent)")
        raise ValueError(f"--networks {unknown[0]}: no such network (known: {listed})")
    return {name: known[name] for name in names}


class CapacityPlan:
    """The sweep over networks, edge counts and modes; ``partial.json`` after every count."""

    def __init__(
        self,
        scenario: Path,
        out: Path,
        settings: PlanSettings,
        edge_counts: Iterable[int] = PLAN_EDGES,
        gammas: Iterable[int] = PLAN_GAMMAS,
        modes: Iterable[ModeSpec] = MODES,
    ) -> None:
        self.scenario = scenario
        self.out = out
        self.settings = settings
        self.edge_counts = sorted(edge_counts)
        self.gammas = list(gammas)
        self.modes = list(modes)
        self.points: list[PlanPoint] = []
        self.stopped: dict[tuple[str, str], int] = {}  # (network, mode) -> last count run
        self.wall_s = 0.0

    def run(self, runner: Runner, say: Callable[[str], None] = print) -> None:
        """Every edge count in turn, its cases at once on ``runner``; modes past their
        capacity are left out of the counts after."""
        started = time.perf_counter()
        for edges in self.edge_counts:
            live = [
                (network, spec)
                for network in self.settings.networks
                for spec in self.modes
                if (network, spec.name) not in self.stopped
            ]
            if not live:
                say(f"every mode is past its capacity on every network before {edges} edges")
                break
            cases = [c for n, s in live for c in cases_of(s, n, edges, self.gammas)]
            tick = time.perf_counter()
            results: dict[tuple[str, str], list] = {}
            for result in runner(self.settings, cases):
                results.setdefault((result[0].network, result[0].mode), []).append(result)
            for (network, mode), found in results.items():
                self.points.append(best_point(found))
                mine = [p for p in self.points if p.network == network and p.mode == mode]
                if past_capacity(mine):
                    self.stopped[(network, mode)] = edges
            self.wall_s = time.perf_counter() - started
            say(
                f"{edges} edges: {len(cases)} simulations in {time.perf_counter() - tick:.1f} s"
                f" ({len(live)} mode(s) x network(s) still below their peak)"
            )
            self.save("partial.json")

    def save(self, name: str) -> Path:
        path = self.out / name
        path.write_text(json.dumps(self.document(), indent=1))
        return path

    def document(self) -> dict[str, Any]:
        """The plan so far: per network and mode its capacity and points, the crossover."""
        networks: dict[str, Any] = {}
        for network in self.settings.networks:
            by_mode: dict[str, list[PlanPoint]] = {}
            for point in self.points:
                if point.network == network:
                    by_mode.setdefault(point.mode, []).append(point)
            if not by_mode:
                continue
            networks[network] = {
                "modes": {
                    mode: {
                        "capacity_edges": capacity_edges(points),
                        "swept_to": max(p.edges for p in points),
                        "stopped_after": self.stopped.get((network, mode)),
                        "points": [_brief(p) for p in points],
                    }
                    for mode, points in by_mode.items()
                },
                "crossover_edges": crossover_edges(by_mode),
            }
        return {
            "scenario": str(self.scenario),
            "slo": asdict(self.settings.slo),
            "slo_share": SLO_SHARE,
            "edge_counts": self.edge_counts,
            "gammas": self.gammas,
            "requests_per_edge": self.settings.requests_per_edge,
            "fixed_rounds": self.settings.fixed_rounds,
            "modelled": list(MODELLED) if on_gpus(self.settings.raw) else [],
            "networks": networks,
            "wall_s": self.wall_s,
        }


def _brief(point: PlanPoint) -> dict[str, Any]:
    left_out = ("network", "mode", "world", "sim", "results_dir", "draft")
    return {k: v for k, v in asdict(point).items() if k not in left_out}
