"""How faithful is the simulator? Runs a matrix of scenarios (recorded networks x edge counts
x load x window policy) in the emulator and the simulator with the same seed, and compares.

    sudo python scripts/validate_fidelity.py --suite smoke [--json]     # 4 cases, ~6 min
    sudo python scripts/validate_fidelity.py --suite full --out results  # 14 cases, ~25 min
    sudo python scripts/validate_fidelity.py --scenario my-scenario.yaml

Each case is one run of the main job (``run_topology.py``: Mininet with the real processes,
then the simulator). Per case: every metric in both worlds and the simulator's relative
error, the Kolmogorov–Smirnov distance of per-round TPOT and of round trips, and the round
time broken into draft, uplink, queue, verify, server and downlink; a metric more than 5 %
off is a miss, attributed to the component that differs most. Over the suite: MAPE per
metric and whether the policies rank alike. Writes fidelity.json, fidelity.md, CDF overlays
and an error heat map; every finished case is kept in partial.json at once. Started by a
Python without the project's packages (sudo's), it re-runs itself with the project's .venv.
"""

from __future__ import annotations

import sys

from project_python import ROOT, use_project_python

if __name__ == "__main__":
    use_project_python(__file__)

import argparse
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from emulator.fidelity import round_trips, token_intervals
from emulator.mainjob import MainJobFailed, run_main_job
from emulator.plots import plot_cdf_grid, plot_error_heatmap
from emulator.scenario import ScenarioError, load_scenario
from emulator.suite import SUITES, SuiteUnavailable, write_suite
from emulator.suite_results import (
    TARGET_METRICS,
    mape_key,
    score_run,
    suite_markdown,
    summarise_suite,
)
from runtime.process import stop_on_signals

RUN_TIMEOUT_S = 900


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--suite", choices=sorted(SUITES), help="smoke (4 cases) or full (14)")
    which.add_argument("--scenario", help="one scenario file of your own, in both worlds")
    parser.add_argument("--seed", type=int, default=1, help="every suite case's seed")
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument("--json", action="store_true", help="last line: the results as JSON")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """The cases to run: name, group, policy and scenario file of each."""
    if args.scenario:
        scenario = load_scenario(args.scenario)  # checked now, not after Mininet started
        policies = sorted({group.policy for group in scenario.edges})
        return [
            {
                "name": scenario.name,
                "group": scenario.name,
                "policy": ",".join(policies),
                "path": Path(args.scenario),
            }
        ]
    return [
        {"name": case.name, "group": case.group, "policy": case.policy, "path": path}
        for case, path in write_suite(args.suite, folder, args.seed)
    ]


def save(path: Path, document: dict[str, Any]) -> None:
    """Written aside, then renamed: an interrupted write leaves the last complete one."""
    path.with_suffix(".tmp").write_text(json.dumps(document, indent=1))
    path.with_suffix(".tmp").replace(path)


def report(out: Path, document: dict[str, Any], samples: dict[str, dict[str, Any]]) -> None:
    cases, summary = document["cases"], document["summary"]
    (out / "fidelity.md").write_text(suite_markdown(cases, summary))
    errors = {
        name: {m: row["error"] for m, row in case["score"]["metrics"].items()}
        for name, case in cases.items()
        if "score" in case
    }
    if errors:
        plot_error_heatmap(errors, out / "errors.png")
        tpot = {name: {w: s["tpot"] for w, s in worlds.items()} for name, worlds in samples.items()}
        rtt = {name: {w: s["rtt"] for w, s in worlds.items()} for name, worlds in samples.items()}
        plot_cdf_grid(tpot, "per-round TPOT (ms)", out / "cdf-tpot.png")
        plot_cdf_grid(rtt, "round trip (ms)", out / "cdf-round-trip.png")


def print_case(index: int, total: int, name: str, case: dict[str, Any]) -> None:
    if "score" not in case:
        print(f"[{index}/{total}] {name}: failed: {case['error']}", flush=True)
        return
    metrics = case["score"]["metrics"]
    errors = "  ".join(
        f"{m} {metrics[m]['error'] * 100:+.1f}%"
        for m in TARGET_METRICS
        if metrics[m]["error"] is not None
    )
    print(f"[{index}/{total}] {name}: {errors}  ({case['wall_s']:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    if os.geteuid() != 0:
        print("validate_fidelity: error: the emulator needs root: use sudo", file=sys.stderr)
        return 2
    label = args.suite or Path(args.scenario).stem
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-fidelity-{label}"
    with tempfile.TemporaryDirectory() as folder:
        try:
            cases = plan(args, Path(folder))
        except (ScenarioError, SuiteUnavailable) as exc:
            print(f"validate_fidelity: error: {exc}", file=sys.stderr)
            return 2
        out.mkdir(parents=True, exist_ok=True)
        partial = out / "partial.json"
        document: dict[str, Any] = {"suite": label, "seed": args.seed, "cases": {}}
        samples: dict[str, dict[str, Any]] = {}
        print(f"validate_fidelity: {len(cases)} case(s); results in {out}", flush=True)
        try:
            for index, case in enumerate(cases, 1):
                print(f"[{index}/{len(cases)}] {case['name']}: emulating, simulating", flush=True)
                record: dict[str, Any] = {"group": case["group"], "policy": case["policy"]}
                started = time.monotonic()
                try:
                    run = run_main_job(case["path"], out / "runs", RUN_TIMEOUT_S)
                    results, emu, sim = run.results, run.emulated_events(), run.simulated_events()
                except MainJobFailed as exc:
                    record["error"] = str(exc)
                else:
                    record["results_dir"] = str(results)
                    record["score"] = score_run(emu, sim)
                    run_info = json.loads((results / "run.json").read_text())
                    record["sim_speeds"] = run_info.get("sim_speeds", {})
                    samples[case["name"]] = {
                        "emulated": {"tpot": token_intervals(emu), "rtt": round_trips(emu)},
                        "simulated": {"tpot": token_intervals(sim), "rtt": round_trips(sim)},
                    }
                record["wall_s"] = time.monotonic() - started
                document["cases"][case["name"]] = record
                save(partial, document)
                print_case(index, len(cases), case["name"], record)
        except KeyboardInterrupt:
            print(
                f"validate_fidelity: interrupted; the cases done so far are in {partial}",
                file=sys.stderr,
            )
            return 130
    document["summary"] = summary = summarise_suite(document["cases"])
    save(out / "fidelity.json", document)
    partial.unlink()
    report(out, document, samples)
    print("\n" + (out / "fidelity.md").read_text())
    for metric in TARGET_METRICS:
        key = mape_key(metric)
        value = summary[key]
        print(f"{key:>24}: {'-' if value is None else f'{value * 100:.1f} %'}")
    print(f"{'rank_agreement':>24}: {summary['rank_agreement']}")
    print(f"results (fidelity.json, fidelity.md, errors.png, cdf-*.png) in {out}")
    if args.json:
        print(json.dumps({"results_dir": str(out), **summary, "cases": document["cases"]}))
    return 0 if not summary["failed_cases"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
