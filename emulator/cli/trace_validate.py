"""Emulated edges (``draft: replay``) against real drafters on the same scenario, where both fit:
per-round draft time, acceptance and TPOT, real and replayed runs alternating.

    sudo python scripts/validate_replay.py [--scenario S] [--edges 1,3] [--repeats 2] [--json]

Each run is the main job (``run_topology.py``) in a fresh process. Results: ``replay.json``
(``partial.json`` while it runs: finished runs survive a failure or Ctrl-C) and the runs'
folders in ``results/<time>-replay-check/``; with ``--json`` the last line is the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from emulator.experiments.replay_check import (
    MEASURES,
    TOLERANCE,
    RunMeasures,
    compare_runs,
    run_check,
)
from emulator.paths import ROOT
from emulator.run.child_runs import MainJobFailed, run_main_job
from runtime.arguments import positive_int
from runtime.process import stop_on_signals

DEFAULT_SCENARIO = ROOT / "topologies" / "default.yaml"
RUN_TIMEOUT_S = 1800.0


def edge_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 1,3, got {text!r}") from None
    if not counts or min(counts) < 1 or max(counts) > 3:
        raise argparse.ArgumentTypeError("real drafters fit 1 to 3 edges on this machine")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="base scenario YAML")
    parser.add_argument("--edges", type=edge_counts, default=[1, 3], help="default: 1,3")
    parser.add_argument("--repeats", type=positive_int, default=2, help="runs of each kind")
    parser.add_argument(
        "--as-profiled",
        action="store_true",
        help="emulated edges at the profile's speed (default: at the speed the real "
        "drafters' probes read in the run before)",
    )
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument("--json", action="store_true", help="last line: the comparison as JSON")
    return parser.parse_args(argv)


def table(comparison: dict) -> str:
    lines = [f"{'edges':>5} {'measure':12} {'real':>9} {'replayed':>9} {'error':>7}  within 5 %"]
    for edges, row in comparison.items():
        for name in MEASURES:
            if name in row:
                cell = row[name]
                lines.append(
                    f"{edges:>5} {name:12} {cell['real']:9.3f} {cell['replay']:9.3f} "
                    f"{cell['error']:+7.1%}  {'yes' if cell['within'] else 'NO'}"
                )
        lines.append(f"{edges:>5} {'fallbacks':12} {row['fallback_rounds']:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("validate_replay: error: the emulator needs root", file=sys.stderr)
        return 2
    scenario = Path(args.scenario)
    if not scenario.is_file():
        print(f"validate_replay: error: {scenario}: no such scenario file", file=sys.stderr)
        return 2
    stop_on_signals()
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-replay-check"
    out.mkdir(parents=True, exist_ok=True)
    total = len(args.edges) * args.repeats * 2
    runs: list[RunMeasures] = []

    def done(run: RunMeasures) -> None:
        runs.append(run)
        print(
            f"validate_replay: run {len(runs)}/{total}: {run.edges} edge(s), {run.draft}: "
            f"draft {run.draft_ms or 0:.0f} ms, acceptance {run.acceptance or 0:.3f}, "
            f"TPOT {run.tpot_ms or 0:.0f} ms"
            + (f" (draft speed x{run.speed:.3f})" if run.speed else ""),
            flush=True,
        )

    status = 0
    try:
        run_check(
            scenario,
            out,
            args.edges,
            args.repeats,
            lambda s, o: run_main_job(s, o, RUN_TIMEOUT_S),
            done,
            args.as_profiled,
        )
    except KeyboardInterrupt:
        print("validate_replay: interrupted; the finished runs are kept", file=sys.stderr)
        status = 130
    except MainJobFailed as exc:
        print(f"validate_replay: error: {exc}; the finished runs are kept", file=sys.stderr)
        status = 1
    comparison = compare_runs(runs)
    document = {"tolerance": TOLERANCE, "comparison": comparison, "runs": [asdict(r) for r in runs]}
    (out / ("replay.json" if status == 0 else "partial.json")).write_text(
        json.dumps(document, indent=1)
    )
    print(table(comparison))
    print(f"results in {out}")
    if args.json:
        print(json.dumps({"results_dir": str(out), "comparison": comparison}))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
