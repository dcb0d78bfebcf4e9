"""Evaluate window policies (fixed γ, the heuristic, AWC alone and advised by the server, the
learned AWC, the oracle) across links and load levels, in the simulator, the emulator or both.

    python scripts/evaluate_awc.py --world sim [--quick] [--seed N] [--json]
    sudo python scripts/evaluate_awc.py --world both [--scenarios constant-bad,lte-driving]

Scenarios: a constant good and a constant bad link, one per recorded dataset family in
../shared/traces (LTE driving rates with an LTE RTT trace, 5G driving rates with 5G pings,
WiFi rates with a WiFi RTT trace, Norwegian 3G bus rates with the LTE RTT trace,
edge-vs-cloud RTT alone), and the LTE link at load levels
from one edge to server saturation. The single-edge scenarios are emulator-sized: ``emu``
runs them in Mininet with the real processes (a smaller workload and fewer fixed γ, since
every run loads the models), and ``both`` runs them in both worlds with the same seed and
sets AWC's gain predicted by the simulator beside the gain measured in the emulator. Prints
tables of every metric (also in awc.md), writes PNGs and awc.json, and ends (with --json)
with a JSON line whose summary compares AWC with the best fixed γ in hindsight, fixed γ = 4,
the heuristic, the learned policy and the oracle, and the server-advised AWC with the best
fixed γ (over all scenarios, and where edges share the server). Started by a Python without
the project's packages (sudo's), it re-runs itself with the project's .venv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from emulator.experiments.awc import (
    EMU_POLICIES,
    SIM_POLICIES,
    SLO_TPOT_MS,
    SLO_TTFT_MS,
    evaluation_cases,
    number_text,
    policy_tables,
    results_by_world,
    run_case,
    summarise_world,
    validate,
    validation_table,
    write_scenarios,
)
from emulator.experiments.runner import run_cases
from emulator.paths import ROOT
from emulator.report.plots import plot_gains, plot_policy_ratios
from emulator.scenario import ScenarioError
from emulator.sim.calibration import CalibrationError
from runtime.process import stop_on_signals


def print_row(world: str, name: str, row: dict[str, dict[str, Any]]) -> None:
    fixed = [p for p in row if p.startswith("fixed:")]
    best = max(fixed, key=lambda p: row[p]["throughput_tok_s"])
    extra = "".join(
        f"  {p} {row[p]['throughput_tok_s']:6.2f}" for p in ("learned", "oracle") if p in row
    )
    print(
        f"{world} {name:<22} best {best:<8} {row[best]['throughput_tok_s']:6.2f} tok/s  "
        f"fixed:4 {row['fixed:4']['throughput_tok_s']:6.2f}  "
        f"heuristic {row['heuristic']['throughput_tok_s']:6.2f}  "
        f"awc {row['awc']['throughput_tok_s']:6.2f} (γ {row['awc']['gamma_mean']:.1f}){extra}",
        flush=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", choices=("sim", "emu", "both"), default="sim")
    parser.add_argument("--quick", action="store_true", help="fewer requests per edge")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument("--policies", help="comma-separated policies (default: all the world runs)")
    parser.add_argument("--seed", type=int, default=1, help="every scenario's seed")
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument("--json", action="store_true", help="last line: the results as JSON")
    return parser.parse_args(argv)


def choose(all_names: list[str], wanted: str | None, what: str) -> list[str]:
    if not wanted:
        return all_names
    chosen = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in all_names]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; available: {', '.join(all_names)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    if args.world != "sim" and os.geteuid() != 0:
        print("evaluate_awc: error: the emulator needs root: run it with sudo", file=sys.stderr)
        return 2
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-awc-{args.world}"
    with tempfile.TemporaryDirectory() as folder:
        try:
            scenarios = write_scenarios(Path(folder), args.world, args.quick, args.seed)
            names = choose([s.name for s in scenarios], args.scenarios, "scenario")
            scenarios = [s for s in scenarios if s.name in names]
            # both worlds run the emulator's policies in ``both``, so that gains compare
            offered = SIM_POLICIES if args.world == "sim" else EMU_POLICIES
            policies = choose(offered, args.policies, "policy")
            for needed in ("fixed:4", "heuristic", "awc"):
                if needed not in policies:
                    raise ValueError(f"the summary needs {needed} among the policies")
        except (ScenarioError, CalibrationError, ValueError) as exc:
            print(f"evaluate_awc: error: {exc}", file=sys.stderr)
            return 2
        out.mkdir(parents=True, exist_ok=True)
        partial = out / "partial.json"
        worlds = [w for w in ("sim", "emu") if args.world in (w, "both")]
        cases = evaluation_cases(scenarios, worlds, policies)
        finished = run_cases(
            cases,
            lambda case: run_case(case, out / "runs"),
            partial,
            results_by_world,
            say=lambda line: print(f"evaluate_awc: {line}", flush=True),
        )
    results = results_by_world(finished.records)
    for world in worlds:
        for name, row in results[world].items():
            if all(p in row and "error" not in row[p] for p in policies):  # complete rows
                print_row(world, name, row)
    if finished.exit_code():
        why = "interrupted" if finished.interrupted else f"{len(finished.failed)} run(s) failed"
        print(f"evaluate_awc: {why}; the runs done so far are in {partial}", file=sys.stderr)
        return finished.exit_code()
    sim, emu = results["sim"], results["emu"]
    partial.unlink()
    summaries = {}
    fixed = [p for p in policies if p.startswith("fixed:")]
    for world, runs in results.items():
        if runs:
            shown = ["fixed:1", "fixed:4", *(p for p in policies if p not in fixed)]
            plot_policy_ratios(runs, shown, fixed, out / f"policies-{world}.png")
            summaries[world] = {"scenarios": runs, "summary": summarise_world(runs, scenarios)}
    # the first world's results at the top; with ``both``, the emulator's under "emulated"
    document: dict[str, Any] = {
        "world": args.world,
        "slo_ms": {"ttft": SLO_TTFT_MS, "tpot": SLO_TPOT_MS},
        **summaries["sim" if sim else "emu"],
    }
    if args.world == "both":
        document["emulated"] = summaries["emu"]
        document["validation"] = validate(sim, emu)
        plot_gains(document["validation"], out / "gains.png")
    (out / "awc.json").write_text(json.dumps(document, indent=1))
    report = "\n".join(policy_tables(world, summaries[world]["scenarios"]) for world in summaries)
    if "validation" in document:
        report += "\n" + validation_table(document["validation"])
    (out / "awc.md").write_text(report)
    print("\n" + report)
    for key, value in document["summary"].items():
        print(f"{key:>34}: {number_text(value, 3)}")
    print(f"results (awc.json, awc.md, PNGs) in {out}")
    if args.json:
        print(json.dumps(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
