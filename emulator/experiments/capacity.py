"""The capacity experiment: how many edges one cloud serves within latency SLOs, per mode.

For each edge count and each mode — DSD under AWC, DSD at its best fixed γ, cloud-only
decoding, fused (draft and target in the cloud) at its best fixed γ — the scenario runs with
Poisson arrivals on every edge. A point records throughput, TTFT, TPOT p50/p95, goodput (the
tokens of requests that met both SLOs per second) and the target's utilisation. A mode's
**capacity** is the most edges at which at least ``SLO_SHARE`` of its requests met the
SLOs; the **crossover** is the fewest edges from which DSD (the better of its two modes)
gives more goodput than cloud-only at every larger count swept.

The simulator runs every point (the best fixed γ found by trying 1..``MAX_GAMMA``); the
emulator runs every point with the γ the simulator found best, and its own simulation of
each beside it: up to ``MAX_REAL_DRAFTERS`` edges with real drafters, past that with
emulated edges (``draft: replay``, ``runtime.replay_draft``: no model in the edge; the
real draft's tokens and profiled times), which each point records.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emulator.experiments.runner import save_atomically
from emulator.scenario import Overrides, Slo, absolute_traces, apply_overrides, load_scenario
from emulator.sim.simulation import SimOptions, Simulation
from runtime.events import EventLog
from runtime.machine import fingerprint, fingerprint_id
from runtime.metrics import summarise
from runtime.model_names import REPLAY

EDGE_COUNTS = (1, 2, 4, 8, 16, 32, 64)
MAX_GAMMA = 8
SLO_SHARE = 0.9  # a point is within the SLOs when this share of its requests met both
MAX_REAL_DRAFTERS = 3  # real draft processes this machine holds at once (memory, cores)


@dataclass(frozen=True)
class ModeSpec:
    """One line of the sweep: the scenario's mode and window policy (None: the best fixed γ
    the simulator finds at each point)."""

    name: str
    mode: str
    policy: str | None


MODES = (
    ModeSpec("dsd-awc", "dsd", "awc"),
    ModeSpec("dsd-awc-server", "dsd", "awc:server"),
    ModeSpec("dsd-best-fixed", "dsd", None),
    ModeSpec("cloud", "cloud", "fixed:4"),
    ModeSpec("fused-best-fixed", "fused", None),
)
DSD_MODES = ("dsd-awc", "dsd-awc-server", "dsd-best-fixed")
ADAPTIVE_MODES = ("dsd-awc", "dsd-awc-server")  # set beside the best fixed γ per point


@dataclass
class Point:
    """One (mode, edges) run in one world."""

    mode: str
    edges: int
    world: str
    policy: str
    requests: int
    failed: int
    throughput_tok_s: float | None
    goodput_tok_s: float | None
    slo_share: float | None
    ttft_p50_ms: float | None
    tpot_p50_ms: float | None
    tpot_p95_ms: float | None
    utilisation: float | None
    sim: dict[str, float | None] = field(default_factory=dict)  # emu points: the simulation
    results_dir: str | None = None
    fallback_rounds: int | None = None  # emulated edges' rounds the shared real draft drafted
    draft: str = "real"  # emu points: "real" drafters or emulated edges ("replay")


def point_metrics(events: list[dict[str, Any]], slo: Slo, targets: int = 1) -> dict[str, Any]:
    """A point's measures from its event log (either world's); the utilisation is the mean
    over ``targets`` targets'."""
    summary = summarise(events, per_edge=False)
    requests = [e for e in events if e["event"] == "request"]
    ok = [r for r in requests if not r.get("error")]
    met = [r for r in ok if _meets(r, slo)]
    span = summary["duration_s"]
    batches = [e for e in events if e["event"] == "batch"]
    busy_s = sum(b["verify_ms"] for b in batches) / 1000.0
    return {
        "requests": len(ok),
        "failed": len(requests) - len(ok),
        "throughput_tok_s": summary["throughput_tok_s"],
        "goodput_tok_s": sum(r["output_tokens"] for r in met) / span if span else None,
        "slo_share": len(met) / len(requests) if requests else None,
        "ttft_p50_ms": summary["ttft_ms"]["p50"],
        "tpot_p50_ms": summary["tpot_ms"]["p50"],
        "tpot_p95_ms": summary["tpot_ms"]["p95"],
        "utilisation": min(1.0, busy_s / span / targets) if span and batches else None,
        # emulated edges' rounds the shared real draft drafted (None: no emulated edges)
        "fallback_rounds": (summary.get("replayed_rounds") or {}).get("fallback"),
    }


def _meets(request: dict[str, Any], slo: Slo) -> bool:
    if request.get("t_first_token") is None or request.get("t_done") is None:
        return False
    ttft = (request["t_first_token"] - request["t_arrival"]) * 1000.0
    tokens = request["output_tokens"]
    tpot = (request["t_done"] - request["t_first_token"]) * 1000.0 / max(1, tokens - 1)
    return ttft <= slo.ttft_ms and tpot <= slo.tpot_ms


def capacity_edges(points: Iterable[Point]) -> int | None:
    """The most edges at which the mode kept ``SLO_SHARE`` of its requests within the SLOs
    (None: not even at the fewest swept)."""
    within = [p.edges for p in points if p.slo_share is not None and p.slo_share >= SLO_SHARE]
    return max(within, default=None)


def crossover_edges(by_mode: dict[str, list[Point]]) -> int | None:
    """The fewest edges from which the better DSD mode's goodput exceeds cloud-only's at
    every larger count swept (None: DSD never stays ahead)."""
    cloud = {p.edges: p.goodput_tok_s or 0.0 for p in by_mode.get("cloud", [])}
    dsd: dict[int, float] = {}
    for name in DSD_MODES:
        for p in by_mode.get(name, []):
            dsd[p.edges] = max(dsd.get(p.edges, 0.0), p.goodput_tok_s or 0.0)
    counts = sorted(set(cloud) & set(dsd))
    ahead = None
    for edges in reversed(counts):
        if dsd[edges] <= cloud[edges]:
            break
        ahead = edges
    return ahead


def adaptive_vs_best_fixed(by_mode: dict[str, list[Point]]) -> dict[str, dict[str, Any]]:
    """Per adaptive mode and edge count, its goodput and throughput over the best fixed γ's
    (None where the best fixed γ had none)."""
    best = {p.edges: p for p in by_mode.get("dsd-best-fixed", [])}
    ratios: dict[str, dict[str, Any]] = {}
    for name in ADAPTIVE_MODES:
        for p in by_mode.get(name, []):
            fixed = best.get(p.edges)
            if fixed is None:
                continue
            ratios.setdefault(name, {})[str(p.edges)] = {
                measure: _ratio(getattr(p, f"{measure}_tok_s"), getattr(fixed, f"{measure}_tok_s"))
                for measure in ("goodput", "throughput")
            }
    return ratios


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


class CapacitySweep:
    """Runs the sweep and keeps every finished point in ``out/partial.json`` as it goes."""

    def __init__(
        self,
        base: Path,
        out: Path,
        edge_counts: Iterable[int] = EDGE_COUNTS,
        slo: Slo | None = None,
        link: dict[str, str] | None = None,
        seed: int | None = None,
        profile: str | None = None,
    ) -> None:
        self.raw = yaml.safe_load(base.read_text(encoding="utf-8"))
        if link is not None:
            self.raw["edges"][0]["link"] = {**link, "queue_packets": 100}
        self.out = out
        self.edge_counts = sorted(edge_counts)
        self.slo = slo or Slo()
        self.seed = seed
        self.profile = profile  # one profile file for every pair (default: this machine's)
        self.base = base.resolve()
        self.machine = fingerprint_id(fingerprint(1))
        self.points: list[Point] = []
        self.best_gamma: dict[tuple[str, int], str] = {}
        self.carried: dict[tuple[str, int], Point] = {}  # an earlier run's emulated points
        self.failed: dict[str, str] = {}  # emulated points whose runs failed: mode/edges -> why
        load_scenario(self._write("check", 1, "dsd", "awc"))  # a bad base fails before any run

    @classmethod
    def resumed(cls, out: Path) -> CapacitySweep:
        """The sweep whose results are in ``out``, to finish there: its options as it ran,
        and its emulated points carried (``emulate`` keeps each instead of running it
        again). Refused, in one line, for a sweep another machine ran."""
        found = [out / name for name in ("partial.json", "capacity.json") if (out / name).exists()]
        if not found:
            raise ValueError(f"--resume {out}: no partial.json or capacity.json there")
        try:
            document = json.loads(found[0].read_text())
            sweep = cls(
                Path(document["scenario"]),
                out,
                document["edge_counts"],
                Slo(**document["slo"]),
                seed=document["seed"],
                profile=document["profile"],
            )
            sweep.raw["edges"][0]["link"] = document["link"]  # the link it ran on, as it was
            points = [Point(**fields) for fields in document["points"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            reason = f"{found[0].name} is not a capacity sweep's ({exc})"
            raise ValueError(f"--resume {out}: {reason}") from None
        if document.get("machine") != sweep.machine:
            raise ValueError(
                f"--resume {out}: that sweep ran on machine {document.get('machine')}, "
                f"this is {sweep.machine}: its points would not compare"
            )
        sweep.carried = {(p.mode, p.edges): p for p in points if p.world == "emu"}
        return sweep

    def _write(
        self, label: str, edges: int, mode: str, policy: str, draft: str | None = None
    ) -> Path:
        """The scenario of one point, kept in the results (its paths made absolute)."""
        overrides = Overrides(edges=edges, mode=mode, policy=policy, seed=self.seed, draft=draft)
        raw = apply_overrides(self.raw, overrides, self.base.parent / "capacity.yaml")
        raw = absolute_traces(raw, self.base.parent)
        path = self.out / "scenarios" / f"{label}-{edges}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return path

    def simulate(self, spec: ModeSpec, edges: int) -> Point:
        """One simulated point; a best-fixed mode tries every γ and keeps the best goodput."""
        policies = [spec.policy] if spec.policy else [f"fixed:{g}" for g in range(1, MAX_GAMMA + 1)]
        best: Point | None = None
        for policy in policies:
            path = self._write(f"{spec.name}-{policy.replace(':', '')}", edges, spec.mode, policy)
            log = EventLog(None, "sim", keep=True, flush_each=False)
            Simulation(load_scenario(path), log, SimOptions(profile=self.profile)).run()
            point = Point(spec.name, edges, "sim", policy, **point_metrics(log.events, self.slo))
            if best is None or (point.goodput_tok_s or 0.0) > (best.goodput_tok_s or 0.0):
                best = point
        assert best is not None
        self.best_gamma[(spec.name, edges)] = best.policy
        return best

    def emulate(self, spec: ModeSpec, edges: int, run: Callable[[Path, Path], Any]) -> Point:
        """One emulated point (``run(scenario, out)`` is the main job, returning its run):
        the best fixed γ is the simulator's at this point. A point of the sweep this resumes
        is kept instead, where the simulator still picks its policy."""
        policy = spec.policy or self.best_gamma[(spec.name, edges)]
        carried = self.carried.get((spec.name, edges))
        if carried is not None and carried.policy == policy:
            return carried
        draft = REPLAY if edges > MAX_REAL_DRAFTERS else None
        path = self._write(f"{spec.name}-emu", edges, spec.mode, policy, draft)
        finished = run(path, self.out / "runs")
        emu = point_metrics(finished.emulated_events(), self.slo)
        sim = point_metrics(finished.simulated_events(), self.slo)
        return Point(
            spec.name,
            edges,
            "emu",
            policy,
            **emu,
            sim=sim,
            results_dir=str(finished.results),
            draft=draft or "real",
        )

    def keep(self, point: Point) -> None:
        self.points.append(point)
        save_atomically(self.out / "partial.json", self.document())

    def document(self) -> dict[str, Any]:
        """Everything so far: the points, and per mode and world its capacity."""
        summary: dict[str, Any] = {}
        for world in ("sim", "emu"):
            by_mode: dict[str, list[Point]] = {}
            for p in self.points + self._not_yet_kept():
                if p.world == world:
                    by_mode.setdefault(p.mode, []).append(p)
            if not by_mode:
                continue
            summary[world] = {
                "modes": {
                    name: {
                        "capacity_edges": capacity_edges(points),
                        "points": [_brief(p) for p in sorted(points, key=lambda p: p.edges)],
                    }
                    for name, points in by_mode.items()
                },
                "crossover_edges": crossover_edges(by_mode),
                "adaptive_vs_best_fixed": adaptive_vs_best_fixed(by_mode),
            }
        return {
            "scenario": str(self.base),
            "seed": self.seed,
            "profile": self.profile,
            "machine": self.machine,
            "slo": asdict(self.slo),
            "slo_share": SLO_SHARE,
            "edge_counts": self.edge_counts,
            "link": self.raw["edges"][0]["link"],
            "summary": summary,
            "points": [asdict(p) for p in self.points + self._not_yet_kept()],
            "failed_points": self.failed,
        }

    def _not_yet_kept(self) -> list[Point]:
        """The resumed sweep's emulated points this run has not reached yet: written with
        the rest, so that a failure or Ctrl-C before them loses none."""
        reached = {(p.mode, p.edges) for p in self.points if p.world == "emu"}
        return [p for key, p in self.carried.items() if key not in reached]


def _brief(point: Point) -> dict[str, Any]:
    fields = asdict(point)
    return {k: v for k, v in fields.items() if k not in ("mode", "world", "results_dir")}
