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


def run_check(
    base: Path,
    out: Path,
    edge_counts: list[int],
    repeats: int,
    run: Callable[[Path, Path], Any],
    done: Callable[[RunMeasures], None] = lambda _: None,
    as_profiled: bool = False,
) -> list[RunMeasures]:
    """Real and replayed runs in turn (real first, then replayed, ``repeats`` times per edge
    count), each through ``run(scenario, out)`` (the main job), the replayed one at the
    speed the real one's probes read (1 ``as_profiled``); ``done`` after each, and
    ``out/partial.json`` kept up to date."""
    runs: list[RunMeasures] = []
    for edges in edge_counts:
        for _ in range(repeats):
            speed = None
            for replay in (False, True):
                path = scenario_for(base, out, edges, replay, None if as_profiled else speed)
                finished = run(path, out / "runs")
                found = measures(finished.emulated_events())
                if not replay:
                    speed = probed_draft_speed(finished.results)
                measured = RunMeasures(
                    edges,
                    "replay" if replay else "real",
                    **found,
                    results_dir=str(finished.results),
                    speed=(1.0 if as_profiled else speed) if replay else None,
                )
                runs.append(measured)
                (out / "partial.json").write_text(
                    json.dumps({"runs": [asdict(r) for r in runs]}, indent=1)
                )
                done(measured)
    return runs
