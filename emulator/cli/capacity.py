"""How many edges one target serves within the SLOs, per mode (DSD under AWC, DSD at its best
fixed γ, cloud-only, fused), and from how many edges DSD beats cloud-only.

    python scripts/capacity.py [--world sim] [--edges 1,2,4,8,16,32,64] [--json]
    sudo python scripts/capacity.py --world both [--link lte-driving]
    sudo python scripts/capacity.py --world both --resume results/<time>-capacity

The base scenario (``topologies/capacity.yaml``) is one edge group with Poisson arrivals;
with the recorded traces beside the project its link is a recorded one (``--link``, default
lte-driving; ``--link scenario`` keeps the scenario's). ``sim`` runs every point in the
simulator; ``emu`` runs every point in Mininet, with real drafters up to 3 edges and emulated
edges past that (``draft: replay``: no model in the edge, the real draft's recorded tokens
and profiled times), the simulator's own prediction of each beside it; ``both`` does both.
Results: ``capacity.json`` (``partial.json`` while it runs: finished points survive a
failure or Ctrl-C), ``capacity.md``, ``throughput.png`` and ``tpot.png`` in
``results/<time>-capacity/``; with ``--json`` the last line is the summary. ``--resume``
finishes a sweep in its folder with the options it ran with, its emulated points kept (an
emulated sweep takes about 7 minutes a point, more than one sitting).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from datetime import datetime
from functools import partial
from pathlib import Path

from tqdm import tqdm

from emulator.experiments.capacity import (
    EDGE_COUNTS,
    MAX_REAL_DRAFTERS,
    MODES,
    CapacitySweep,
    Point,
    Slo,
)
from emulator.experiments.runner import Case, run_cases, save_atomically
from emulator.paths import ROOT
from emulator.report.plots import plot_capacity
from emulator.run.child_runs import run_main_job
from emulator.scenario import ScenarioError
from emulator.sim.calibration import CalibrationError
from emulator.traces.recorded import recorded_links
from runtime.arguments import positive_float
from runtime.process import stop_on_signals

DEFAULT_SCENARIO = ROOT / "topologies" / "capacity.yaml"
EMU_TIMEOUT_S = 1800.0
SWEEP_OPTIONS = ("scenario", "link", "edges", "slo_ttft_ms", "slo_tpot_ms", "seed", "profile")


def edge_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 1,2,4, got {text!r}") from None
    if not counts or counts[0] < 1 or counts[-1] > 10_000:
        raise argparse.ArgumentTypeError(f"edge counts must be 1..10000, got {text!r}")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", choices=("sim", "emu", "both"), default="sim")
    parser.add_argument("--scenario", help=f"base scenario YAML (default: {DEFAULT_SCENARIO.name})")
    parser.add_argument(
        "--link",
        help="a recorded link (lte-driving, 5g-driving, wifi, 3g-bus, edge-vs-cloud-rtt) or "
        "'scenario' for the scenario's own; default: lte-driving where recorded traces exist",
    )
    parser.add_argument(
        "--edges",
        type=edge_counts,
        help=f"edge counts to sweep (default: {','.join(map(str, EDGE_COUNTS))})",
    )
    parser.add_argument("--slo-ttft-ms", type=positive_float, help=f"default: {Slo().ttft_ms:g}")
    parser.add_argument("--slo-tpot-ms", type=positive_float, help=f"default: {Slo().tpot_ms:g}")
    parser.add_argument("--seed", type=int, help="the scenario's seed")
    parser.add_argument(
        "--profile", help="the simulator's profile JSON (default: this machine's, measured once)"
    )
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument(
        "--resume",
        metavar="DIR",
        help="finish the sweep whose results are in DIR, with its options, keeping its "
        "emulated points",
    )
    parser.add_argument("--json", action="store_true", help="last line: the summary as JSON")
    args = parser.parse_args(argv)
    given = [name for name in SWEEP_OPTIONS if getattr(args, name) is not None]
    if args.resume and given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        parser.error(f"--resume runs the sweep with the options it ran with; drop {options}")
    return args


def choose_link(name: str | None) -> tuple[dict[str, str] | None, str]:
    """The link to put in the scenario, and how to say which it is."""
    recorded = recorded_links()
    if name == "scenario" or (name is None and not recorded):
        return None, "the scenario's own link"
    name = name or "lte-driving"
    if name not in recorded:
        known = ", ".join(recorded) or "none: ../shared/traces is absent"
        raise ValueError(f"--link {name}: no such recorded link (known: {known})")
    return recorded[name], f"recorded link {name}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.world != "sim" and os.geteuid() != 0:
        print(
            "capacity: error: the emulator needs root: sudo python scripts/capacity.py ...",
            file=sys.stderr,
        )
        return 2
    stop_on_signals()
    try:
        sweep = open_sweep(args)
    except (ScenarioError, ValueError, OSError) as exc:
        print(f"capacity: error: {exc}", file=sys.stderr)
        return 2
    out = sweep.out
    status = 0
    try:
        status = run_sweep(sweep, args)
    except KeyboardInterrupt:
        status = 130
    except CalibrationError as exc:
        print(f"capacity: error: {exc}; the finished points are kept", file=sys.stderr)
        status = 1
    if status == 130:
        print("capacity: interrupted; the finished points are kept", file=sys.stderr)
    document = finish(sweep, out, complete=status == 0)
    print(table(sweep.points))
    summary = document["summary"]
    for world, result in summary.items():
        capacities = ", ".join(
            f"{name} {mode['capacity_edges'] or 'none'}" for name, mode in result["modes"].items()
        )
        crossover = result["crossover_edges"]
        overtakes = (
            f"DSD overtakes cloud-only from {crossover} edges"
            if crossover
            else "DSD does not overtake cloud-only at the edge counts swept"
        )
        print(f"{world}: capacity (edges within the SLOs): {capacities}; {overtakes}")
    print(f"results, plots and capacity.md in {out}")
    if args.json:
        print(json.dumps({"results_dir": str(out), **summary}))
    return status


def open_sweep(args: argparse.Namespace) -> CapacitySweep:
    """The sweep to run: a new one in a new folder, or the one ``--resume`` names."""
    if args.resume:
        sweep = CapacitySweep.resumed(Path(args.resume))
        print(
            f"capacity: resuming the sweep in {sweep.out} (edges {sweep.edge_counts}): "
            f"{len(sweep.carried)} emulated point(s) kept",
            flush=True,
        )
        return sweep
    link, link_text = choose_link(args.link)
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-capacity"
    out.mkdir(parents=True, exist_ok=True)
    slo = Slo(args.slo_ttft_ms or Slo().ttft_ms, args.slo_tpot_ms or Slo().tpot_ms)
    edges = args.edges or list(EDGE_COUNTS)
    sweep = CapacitySweep(
        Path(args.scenario or DEFAULT_SCENARIO), out, edges, slo, link, args.seed, args.profile
    )
    print(f"capacity: {link_text}; edges {edges}; results in {out}", flush=True)
    return sweep


def run_sweep(sweep: CapacitySweep, args: argparse.Namespace) -> int:
    """The simulated points first (the emulator takes their best γ), then the emulated, each
    a case of the experiment runner; the exit status."""
    simulated = [(spec, n) for n in sweep.edge_counts for spec in MODES]
    for spec, edges in tqdm(simulated, desc="simulated points", unit="point"):
        point = sweep.simulate(spec, edges)
        if args.world != "emu":
            sweep.keep(point)
    if args.world == "sim":
        return 0
    replayed = sorted({n for n in sweep.edge_counts if n > MAX_REAL_DRAFTERS})
    if replayed:
        print(
            f"capacity: past {MAX_REAL_DRAFTERS} edges the emulator runs emulated edges "
            f"(draft: replay): {replayed}",
            flush=True,
        )
    cases = [
        Case(
            f"{spec.name}/{n}", f"emulated: {spec.name} at {n} edge(s)", {"spec": spec, "edges": n}
        )
        for n in sweep.edge_counts
        for spec in MODES
    ]

    def emulate(case: Case) -> dict:
        main_job = partial(run_main_job, timeout_s=EMU_TIMEOUT_S)
        point = sweep.emulate(case.settings["spec"], case.settings["edges"], main_job)
        sweep.points.append(point)
        return asdict(point)

    def document(records: dict[str, dict]) -> dict:
        sweep.failed = {key: r["error"] for key, r in records.items() if "error" in r}
        return sweep.document()

    finished = run_cases(
        cases,
        emulate,
        sweep.out / "partial.json",
        document,
        say=lambda line: print(f"capacity: {line}", flush=True),
    )
    if finished.failed:
        print(
            f"capacity: {len(finished.failed)} emulated point(s) failed; the others are kept "
            "(--resume runs the failed ones again)",
            file=sys.stderr,
        )
    return finished.exit_code()


def finish(sweep: CapacitySweep, out: Path, complete: bool) -> dict:
    document = sweep.document()
    save_atomically(out / ("capacity.json" if complete else "partial.json"), document)
    points = document["points"]
    if points:
        plot_capacity(points, "throughput_tok_s", "throughput (tok/s)", out / "throughput.png")
        plot_capacity(points, "tpot_p50_ms", "TPOT p50 (ms)", out / "tpot.png")
    (out / "capacity.md").write_text(f"# Capacity\n\n```\n{table(sweep.points)}\n```\n")
    return document


def table(points: list[Point]) -> str:
    def cell(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [
        f"{'world':5} {'mode':17} {'edges':>5} {'policy':>8} {'tok/s':>7} {'goodput':>7} "
        f"{'in SLO':>6} {'TTFT50':>7} {'TPOT50':>7} {'TPOT95':>7} {'util':>5} {'sim tok/s':>9}"
    ]
    for p in points:
        lines.append(
            f"{p.world:5} {p.mode:17} {p.edges:5d} {p.policy:>8} "
            f"{cell(p.throughput_tok_s, '7.2f')} {cell(p.goodput_tok_s, '7.2f')} "
            f"{cell(p.slo_share, '6.0%')} {cell(p.ttft_p50_ms, '7.0f')} "
            f"{cell(p.tpot_p50_ms, '7.0f')} {cell(p.tpot_p95_ms, '7.0f')} "
            f"{cell(p.utilisation, '5.0%')} {cell(p.sim.get('throughput_tok_s'), '9.2f')}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
