"""How faithful is the simulator? Runs a matrix of scenarios (recorded networks x edge counts
x load x window policy) in the emulator and the simulator with the same seed, and compares.

    sudo python scripts/validate_fidelity.py --suite smoke [--json]          # 4 cases, ~6 min
    sudo python scripts/validate_fidelity.py --suite full --repeats 3 --json  # 23 cases x 3
    sudo python scripts/validate_fidelity.py --suite full --set development   # judge changes
    sudo python scripts/validate_fidelity.py --scenario my-scenario.yaml --repeats 3

Each case is one run of the main job (``run_topology.py``: Mininet with the real processes,
then the simulator) per repeat, each repeat with its own seed; the repeats go round the
cases in turn, so that the machine's drift spreads over all of them. Per case: every metric
over the pooled repeats in both worlds, the simulator's relative error with a 95 % interval,
the Kolmogorov–Smirnov distance of per-round TPOT and of round trips, and where the round
time and the first token's time go; a metric more than 5 % off is a miss, attributed to the
component that differs most. Per set (development, held-out): MAPE per metric with its
interval, and whether the policy pairs the emulator tells apart rank alike. Writes
fidelity.json, fidelity.md, CDF overlays and an error heat map; every finished run is kept
in partial.json at once. Started by a Python without the project's packages (sudo's), it
re-runs itself with the project's .venv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from emulator.experiments.runner import Case, run_cases, save_atomically
from emulator.experiments.suite import SETS, SUITES, SuiteUnavailable, write_suite
from emulator.experiments.suite_results import (
    TARGET_METRICS,
    Run,
    mape_key,
    score_case,
    suite_markdown,
    summarise_suite,
)
from emulator.experiments.suite_stats import metric_values, run_samples
from emulator.paths import ROOT
from emulator.report.fidelity import relative_error, round_trips, token_intervals
from emulator.report.plots import plot_cdf_grid, plot_error_heatmap
from emulator.run.child_runs import MainJobRun, run_main_job
from emulator.scenario import ScenarioError, load_scenario
from emulator.sim.calibration import CalibrationError
from emulator.sim.machine_profiles import machine_profile
from runtime.arguments import positive_int
from runtime.process import stop_on_signals

RUN_TIMEOUT_S = 900


DEFAULT_REPEATS = {"full": 3, "smoke": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--suite", choices=sorted(SUITES), help="smoke (4 cases) or full (23)")
    which.add_argument("--scenario", help="one scenario file of your own, in both worlds")
    parser.add_argument(
        "--set",
        choices=(*SETS, "both"),
        default="both",
        help="which of the suite's sets to run (default both): judge model changes on the\n"
        "development set alone; the held-out set is reported, never tuned to",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        help="runs per case, seeds SEED, SEED+1, ... (default: full 3, smoke and --scenario 1)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the first repeat's seed")
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument("--json", action="store_true", help="last line: the results as JSON")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = DEFAULT_REPEATS.get(args.suite, 1)
    return args


def plan(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """The cases to run: name, group, policy, set, scenario file and first seed of each
    (repeat r runs with that seed + r)."""
    if args.scenario:
        scenario = load_scenario(args.scenario)  # checked now, not after Mininet started
        policies = sorted({group.policy for group in scenario.edges})
        return [
            {
                "name": scenario.name,
                "group": scenario.name,
                "policy": ",".join(policies),
                "split": SETS[0],
                "path": Path(args.scenario),
                "seed": scenario.seed,
            }
        ]
    return [
        {
            "name": case.name,
            "group": case.group,
            "policy": case.policy,
            "split": case.split,
            "path": path,
            "seed": load_scenario(path).seed,
        }
        for case, path in write_suite(args.suite, folder, args.seed, args.set)
    ]


def profile_first(cases: list[dict[str, Any]]) -> None:
    """This machine's profiles of the cases' pairs, measured now where there are none, in
    view: the first case's main job would otherwise measure them with its output hidden."""
    pairs = set()
    for case in cases:
        scenario = load_scenario(case["path"])
        cloud = scenario.cloud
        pairs |= {(cloud.model, group.draft, cloud.threads) for group in scenario.edges}
    for target, draft, threads in sorted(pairs):
        machine_profile(target, draft, threads, say=say)


def say(line: str) -> None:
    print(f"validate_fidelity: {line}", flush=True)


def report(out: Path, document: dict[str, Any], runs: dict[str, dict[int, Run]]) -> None:
    cases = document["cases"]
    (out / "fidelity.md").write_text(suite_markdown(cases, document["summary"]))
    errors = {
        name: {m: row["error"] for m, row in case["score"]["metrics"].items()}
        for name, case in cases.items()
        if "score" in case
    }
    if not errors:
        return
    plot_error_heatmap(errors, out / "errors.png")
    pooled = {
        name: {
            world: {
                "tpot": [v for emu_sim in by_seed.values() for v in token_intervals(emu_sim[i])],
                "rtt": [v for emu_sim in by_seed.values() for v in round_trips(emu_sim[i])],
            }
            for i, world in enumerate(("emulated", "simulated"))
        }
        for name, by_seed in runs.items()
    }
    tpot = {name: {w: s["tpot"] for w, s in worlds.items()} for name, worlds in pooled.items()}
    rtt = {name: {w: s["rtt"] for w, s in worlds.items()} for name, worlds in pooled.items()}
    plot_cdf_grid(tpot, "per-round TPOT (ms)", out / "cdf-tpot.png")
    plot_cdf_grid(rtt, "round trip (ms)", out / "cdf-round-trip.png")


def run_once(case: dict[str, Any], seed: int, out: Path) -> tuple[dict[str, Any], Run]:
    """One repeat of a case: its record (results folder, speeds, errors, wall time) and both
    worlds' events; ``MainJobFailed`` where the run did not finish."""
    started = time.monotonic()
    run: MainJobRun = run_main_job(case["path"], out / "runs", RUN_TIMEOUT_S, "--seed", str(seed))
    events = (run.emulated_events(), run.simulated_events())
    run_info = json.loads((run.results / "run.json").read_text())
    emu, sim = (metric_values([run_samples(world)]) for world in events)
    record = {
        "results_dir": str(run.results),
        "sim_speeds": run_info.get("sim_speeds", {}),
        "errors": {m: relative_error(emu[m], sim[m]) for m in TARGET_METRICS},
        "wall_s": time.monotonic() - started,
    }
    return record, events


def print_run(label: str, record: dict[str, Any]) -> None:
    errors = "  ".join(
        f"{metric} {error * 100:+.1f}%"
        for metric, error in record["errors"].items()
        if error is not None
    )
    print(f"  {label}: {errors}  ({record['wall_s']:.0f} s)", flush=True)


def repeats_in_turn(cases: list[dict[str, Any]], repeats: int) -> list[Case]:
    """Every case once per repeat, the repeats going round the cases in turn (so that the
    machine's drift spreads over all of them), each repeat with its own seed."""
    return [
        Case(
            f"{case['name']}/{case['seed'] + repeat}",
            f"{case['name']} (seed {case['seed'] + repeat})",
            {"case": case, "seed": case["seed"] + repeat},
        )
        for repeat in range(repeats)
        for case in cases
    ]


def print_summary(summaries: dict[str, dict[str, Any]]) -> None:
    for split, summary in summaries.items():
        print(f"{split}:")
        for metric in TARGET_METRICS:
            key = mape_key(metric)
            value, bounds = summary[key], summary[f"{key}_ci"]
            shown = "-" if value is None else f"{value * 100:.1f} %"
            if value is not None and bounds:
                shown += f" [{bounds[0] * 100:.1f}, {bounds[1] * 100:.1f}]"
            print(f"{key:>24}: {shown}")
        print(
            f"{'rank_agreement':>24}: {summary['rank_agreement']} over "
            f"{summary['ranked_pairs']} resolved pair(s) ({summary['unresolved_pairs']} unresolved)"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    if os.geteuid() != 0:
        print("validate_fidelity: error: the emulator needs root: use sudo", file=sys.stderr)
        return 2
    label = args.suite or Path(args.scenario).stem
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-fidelity-{label}"
    runs: dict[str, dict[int, Run]] = {}
    with tempfile.TemporaryDirectory() as folder:
        try:
            cases = plan(args, Path(folder))
        except (ScenarioError, SuiteUnavailable) as exc:
            print(f"validate_fidelity: error: {exc}", file=sys.stderr)
            return 2
        try:
            profile_first(cases)
        except CalibrationError as exc:
            print(f"validate_fidelity: error: {exc}", file=sys.stderr)
            return 1
        out.mkdir(parents=True, exist_ok=True)
        partial = out / "partial.json"
        document: dict[str, Any] = {
            "suite": label,
            "seed": args.seed,
            "repeats": args.repeats,
            "set": args.set,
            "cases": {
                case["name"]: {key: case[key] for key in ("group", "policy", "split")}
                | {"runs": {}}
                for case in cases
            },
        }
        print(
            f"validate_fidelity: {len(cases)} case(s) x {args.repeats} repeat(s); results in {out}",
            flush=True,
        )

        def run(case: Case) -> dict[str, Any]:
            record, events = run_once(case.settings["case"], case.settings["seed"], out)
            runs.setdefault(case.settings["case"]["name"], {})[case.settings["seed"]] = events
            print_run(case.label, record)
            return record

        def with_runs(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
            for key, record in records.items():
                name, seed = key.rsplit("/", 1)
                document["cases"][name]["runs"][seed] = record
            return document

        finished = run_cases(repeats_in_turn(cases, args.repeats), run, partial, with_runs, say)
        if finished.interrupted:
            print(
                f"validate_fidelity: interrupted; the runs done so far are in {partial}",
                file=sys.stderr,
            )
            return 130
    rng = np.random.default_rng(args.seed)
    for name, case in document["cases"].items():
        if name in runs:
            case["score"] = score_case(runs[name], rng)
        else:
            case["error"] = "; ".join(r["error"] for r in case["runs"].values() if "error" in r)
    document["summary"] = summaries = summarise_suite(document["cases"])
    failed_runs = len(finished.failed)
    save_atomically(out / "fidelity.json", document)
    partial.unlink()
    report(out, document, runs)
    print("\n" + (out / "fidelity.md").read_text())
    print_summary(summaries)
    print(f"results (fidelity.json, fidelity.md, errors.png, cdf-*.png) in {out}")
    if args.json:
        last = {
            "results_dir": str(out),
            "repeats": args.repeats,
            "failed_runs": failed_runs,
            "sets": summaries,
            "cases": document["cases"],
        }
        print(json.dumps(last))
    return 0 if not failed_runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
