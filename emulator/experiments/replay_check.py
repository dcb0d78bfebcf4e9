"""Emulated edges against real drafters, where both fit: the same scenario run alternately with
real draft processes and with emulated edges (``draft: replay``), several times each.

Per edge count it compares what the emulated edge stands in for: the per-round draft time,
the acceptance and the TPOT (each run's mean; the medians over the repeats, and their
spread). The emulated edges stand in for the real drafters as this machine runs them now:
their ``speed`` is what the real drafters' speed probes read in the run just before (each
probe a profile op timed, over the profile's price: ``sim_speeds`` in its ``run.json``),
never anything fitted to the measures compared; with ``as_profiled`` it is 1.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from emulator.experiments.runner import Case, Finished, Record, run_cases
from emulator.run.child_runs import MainJobFailed
from emulator.scenario import Overrides, apply_overrides
from runtime.metrics import summarise
from runtime.model_names import REPLAY

MEASURES = ("draft_ms", "acceptance", "tpot_ms")
TOLERANCE = 0.05


@dataclass(frozen=True)
class RunMeasures:
    edges: int
    draft: str  # "real" or "replay"
    draft_ms: float | None
    acceptance: float | None
    tpot_ms: float | None
    fallback_rounds: int
    results_dir: str
    speed: float | None = None  # an emulated run's draft speed (from the real run's probes)


def measures(events: list[dict[str, Any]]) -> dict[str, Any]:
    summary = summarise(events)
    replayed = summary.get("replayed_rounds") or {}
    return {
        "draft_ms": summary["draft_ms"]["mean"],
        "acceptance": summary["acceptance_rate"],
        "tpot_ms": summary["tpot_ms"]["mean"],
        "fallback_rounds": replayed.get("fallback", 0),
    }


def scenario_for(
    base: Path, out: Path, edges: int, replay: bool, speed: float | None = None
) -> Path:
    """The base scenario at ``edges`` edges, with real drafters or emulated edges (at
    ``speed``); its relative paths made absolute (it is written into the results)."""
    raw = yaml.safe_load(base.read_text(encoding="utf-8"))
    overrides = Overrides(edges=edges, draft=REPLAY if replay else None)
    raw = apply_overrides(raw, overrides, base)
    for group in raw["edges"]:
        if replay and speed is not None:
            group["speed"] = round(speed, 4)
        for key in ("trace", "up", "down", "rtt"):
            spec = group.get("link", {}).get(key)
            if spec and ":" not in spec:
                group["link"][key] = str((base.resolve().parent / spec).resolve())
    path = out / "scenarios" / f"{'replay' if replay else 'real'}-{edges}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def compare_runs(runs: list[RunMeasures]) -> dict[str, Any]:
    """Per edge count: each measure's median over the real runs and over the replayed ones,
    the replayed median's error against the real one, its spread, and whether it is
    within ``TOLERANCE``."""
    result: dict[str, Any] = {}
    for edges in sorted({r.edges for r in runs}):
        row: dict[str, Any] = {}
        for name in MEASURES:
            sides = {
                kind: [
                    getattr(r, name)
                    for r in runs
                    if r.edges == edges and r.draft == kind and getattr(r, name) is not None
                ]
                for kind in ("real", "replay")
            }
            if not sides["real"] or not sides["replay"]:
                continue
            real, replay = statistics.median(sides["real"]), statistics.median(sides["replay"])
            error = (replay - real) / real if real else None
            row[name] = {
                "real": real,
                "replay": replay,
                "real_range": [min(sides["real"]), max(sides["real"])],
                "replay_range": [min(sides["replay"]), max(sides["replay"])],
                "error": error,
                "within": error is not None and abs(error) <= TOLERANCE,
            }
        row["fallback_rounds"] = sum(r.fallback_rounds for r in runs if r.edges == edges)
        result[str(edges)] = row
    return result


def probed_draft_speed(results: Path) -> float | None:
    """The mean speed the real drafters' probes read in a run (None without probes)."""
    speeds = json.loads((results / "run.json").read_text()).get("sim_speeds", {})
    edges = [speed for host, speed in speeds.items() if host != "cloud"]
    return sum(edges) / len(edges) if edges else None


class NoProbedSpeed(Exception):
    """An emulated run whose real run before it failed: there is no speed to run it at."""


def replay_cases(edge_counts: list[int], repeats: int) -> list[Case]:
    """Per edge count and repeat, the real run, then the emulated one it sets the speed of."""
    return [
        Case(
            f"{edges}-{repeat}-{kind}",
            f"{edges} edge(s), {kind} drafters (repeat {repeat + 1})",
            {"edges": edges, "repeat": repeat, "replay": kind == "replay"},
        )
        for edges in edge_counts
        for repeat in range(repeats)
        for kind in ("real", "replay")
    ]


def check_document(records: dict[str, Record]) -> dict[str, Any]:
    """The comparison over the runs that finished, and every run's record (a failed one's
    holds its error)."""
    runs = [RunMeasures(**r) for r in records.values() if "error" not in r]
    return {"tolerance": TOLERANCE, "comparison": compare_runs(runs), "runs": records}


def run_check(
    base: Path,
    out: Path,
    cases: list[Case],
    run: Callable[[Path, Path], Any],
    say: Callable[[str], None],
    as_profiled: bool = False,
) -> Finished:
    """The cases in order under the experiments' runner (``out/partial.json`` its
    checkpoint), each through ``run(scenario, out)`` (the main job); an emulated run at the
    speed its real run's probes read (1 ``as_profiled``)."""
    speeds: dict[tuple[int, int], float | None] = {}

    def run_case(case: Case) -> Record:
        edges, repeat, replay = (case.settings[k] for k in ("edges", "repeat", "replay"))
        speed = None
        if replay and not as_profiled:
            if (edges, repeat) not in speeds:
                raise NoProbedSpeed("its real run failed: no probed speed to run it at")
            speed = speeds[(edges, repeat)]
        path = scenario_for(base, out, edges, replay, speed)
        finished = run(path, out / "runs")
        found = measures(finished.emulated_events())
        if not replay:
            speeds[(edges, repeat)] = probed_draft_speed(finished.results)
        measured = RunMeasures(
            edges,
            "replay" if replay else "real",
            **found,
            results_dir=str(finished.results),
            speed=(1.0 if as_profiled else speed) if replay else None,
        )
        say(
            f"{case.label}: draft {measured.draft_ms or 0:.0f} ms, acceptance "
            f"{measured.acceptance or 0:.3f}, TPOT {measured.tpot_ms or 0:.0f} ms"
            + (f" (draft speed x{measured.speed:.3f})" if measured.speed else "")
        )
        return asdict(measured)

    return run_cases(
        cases,
        run_case,
        out / "partial.json",
        check_document,
        say,
        failures=(MainJobFailed, NoProbedSpeed),
    )
