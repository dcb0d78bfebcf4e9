"""Emulated edges (``draft: replay``) against real drafters on the same scenario, where both fit:
per-round draft time, acceptance and TPOT, real and replayed runs alternating.

    sudo python scripts/validate_replay.py [--scenario S] [--edges 1,3] [--repeats 2] [--json]

Each run is the main job (``run_topology.py``) in a fresh process, under the experiments'
rule (a failed run is recorded with its error and the others go on, exit 1; Ctrl-C keeps
the finished ones, exit 130). Results: ``replay.json`` (``partial.json`` while it runs) and
the runs' folders in ``results/<time>-replay-check/``; with ``--json`` the last line is the
comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from emulator.experiments.replay_check import MEASURES, check_document, replay_cases, run_check
from emulator.experiments.runner import save_atomically
from emulator.paths import ROOT
from emulator.run.child_runs import run_main_job
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
    finished = run_check(
        scenario,
        out,
        replay_cases(args.edges, args.repeats),
        lambda s, o: run_main_job(s, o, RUN_TIMEOUT_S),
        lambda message: print(f"validate_replay: {message}", flush=True),
        args.as_profiled,
    )
    document = check_document(finished.records)
    if finished.interrupted:
        print("validate_replay: interrupted; the finished runs are kept", file=sys.stderr)
    else:
        save_atomically(out / "replay.json", document)
    for key, error in finished.failed.items():
        print(f"validate_replay: run {key} failed: {error}", file=sys.stderr)
    print(table(document["comparison"]))
    print(f"results in {out}")
    if args.json:
        print(json.dumps({"results_dir": str(out), "comparison": document["comparison"]}))
    return finished.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
