"""What each of our corrections to DSD-Sim's model changes on the DSD authors' setting:
its fixed-round semantics, then our token budget, loss, bandwidth and recorded traces, one
at a time (``emulator.experiments.corrections``).

    python scripts/compare_dsd_sim.py [--edges 80] [--alpha 0.414] [--json]

Defaults: topologies/dsd-paper.yaml and, for bandwidth and traces, dsd-paper-traces.yaml
(which needs the recorded traces beside the project). Results: ``corrections.md`` and
``corrections.json`` in ``results/<time>-corrections/``; with ``--json`` the last line is
the steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from emulator.experiments.corrections import corrections_markdown, run_steps
from emulator.paths import ROOT
from emulator.scenario import ScenarioError
from emulator.sim.calibration import CalibrationError
from runtime.arguments import positive_int

TOPOLOGIES = ROOT / "topologies"


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def say(text: str) -> None:
    print(f"compare_dsd_sim: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=TOPOLOGIES / "dsd-paper.yaml")
    parser.add_argument("--traces", type=Path, default=TOPOLOGIES / "dsd-paper-traces.yaml")
    parser.add_argument("--edges", type=positive_int, help="edges in all (default: the scenario's)")
    parser.add_argument(
        "--alpha", type=probability, help="every group's acceptance a constant (e.g. 0.414)"
    )
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument("--json", action="store_true", help="last line: the steps as JSON")
    args = parser.parse_args(argv)
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-corrections"
    try:
        for path in (args.scenario, args.traces):
            if not path.is_file():
                raise ValueError(f"{path}: no such scenario file")
        rows = run_steps(
            args.scenario, args.traces, out / "scenarios", args.edges, alpha=args.alpha, say=say
        )
    except (ScenarioError, CalibrationError, ValueError, OSError) as exc:
        print(f"compare_dsd_sim: error: {exc}", file=sys.stderr)
        return 2
    text = corrections_markdown(rows, args.edges, args.scenario, args.alpha)
    (out / "corrections.md").write_text(text)
    (out / "corrections.json").write_text(json.dumps(rows, indent=1))
    print(text)
    print(f"corrections.md and corrections.json in {out}")
    if args.json:
        summary = {"results_dir": str(out), "edges": args.edges, "alpha": args.alpha}
        print(json.dumps({**summary, "steps": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
