"""Simulate a scenario with DSD-Sim: the same scenario file, traces and policy objects as the
emulator, compute times and acceptance from the model pair's profile.

    python scripts/simulate.py topologies/default.yaml
    python scripts/simulate.py topologies/default.yaml --edges 1000 --policy fixed:6 --json

Prints the same metrics table as an emulated run; writes the event log, ``metrics.json``
and a PNG into ``results/<timestamp>-sim-<scenario>/`` (``--no-save`` to skip).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from emulator.report.plots import plot_run
from emulator.scenario import MODE_HELP, Overrides, ScenarioError, load_scenario
from emulator.sim.calibration import CalibrationError
from emulator.sim.simulation import SimOptions, Simulation
from emulator.sim.window_policies import simulated_window_policy
from runtime.arguments import policy_spec_type, positive_int
from runtime.events import EventLog
from runtime.metrics import format_table, summarise
from runtime.protocol import EDGE_MODES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="scenario YAML file, e.g. topologies/default.yaml")
    parser.add_argument("--edges", type=positive_int, help="edge hosts in all, over the groups")
    parser.add_argument(
        "--policy",
        type=policy_spec_type(simulated_window_policy),
        help="window policy of every edge, e.g. fixed:6, awc or oracle",
    )
    parser.add_argument("--mode", choices=EDGE_MODES, help=MODE_HELP)
    parser.add_argument("--requests", type=positive_int, help="requests per edge")
    parser.add_argument("--max-new-tokens", type=positive_int, help="tokens per request")
    parser.add_argument("--seed", type=int, help="overrides the scenario's seed")
    parser.add_argument("--profile", help="profile JSON for every pair (default: profiles/)")
    parser.add_argument("--until", type=float, default=float("inf"), help="simulated seconds")
    parser.add_argument("--out", default="results", help="parent folder of the results")
    parser.add_argument("--no-save", action="store_true", help="write no results folder")
    parser.add_argument("--json", action="store_true", help="last line: the metrics as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        overrides = Overrides(
            edges=args.edges,
            policy=args.policy,
            mode=args.mode,
            requests_per_edge=args.requests,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
        )
        scenario = load_scenario(args.scenario, overrides)
    except ScenarioError as exc:
        print(f"simulate: error: {exc}", file=sys.stderr)
        return 2
    out = None
    if not args.no_save:
        out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-sim-{scenario.name}"
    log = EventLog(out / "events.jsonl" if out else None, "sim", keep=True, flush_each=False)
    options = SimOptions(profile=args.profile, until_s=args.until)
    started = time.perf_counter()
    try:
        simulation = Simulation(scenario, log, options)
    except (CalibrationError, ValueError) as exc:
        print(f"simulate: error: {exc}", file=sys.stderr)
        return 2
    for warning in simulation.warnings:
        print(f"simulate: warning: {warning}", file=sys.stderr)
    with tqdm(
        total=simulation.requests_per_edge * len(simulation.edges),
        unit="req",
        desc="simulating",
        disable=not sys.stderr.isatty(),
    ) as bar:
        result = simulation.run(lambda done, _: bar.update(done - bar.n))
        bar.update(bar.total - bar.n)
    log.close()
    wall = time.perf_counter() - started
    summary = summarise(log.events)
    summary["simulation"] = {
        "wall_s": wall,
        "events": result.events,
        "simulated_s": result.simulated_s,
        "edges": result.edges,
        "batches": result.batches,
        "server_busy_s": result.server_busy_s,
        "links": result.link_counters,
        "warnings": result.warnings,
        "calibration": simulation.calibration(),
    }
    print(format_table(summary))
    modelled: set[str] = set()
    for name, record in summary["simulation"]["calibration"].items():
        for role, device in record.get("devices", {}).items():
            if role == "target" or not name.startswith("targets "):
                print(f"{role} ({name}): {device}")
        modelled.update(record.get("modelled", []))
        if "acceptance_source" in record and not name.startswith("targets "):
            print(f"acceptance of {name}: given by the scenario ({record['acceptance_source']})")
    for part in sorted(modelled):
        print(f"modelled, not measured: {part}")
    print(
        f"\n{result.edges} edges, {result.requests_done} requests done"
        f"{f', {result.requests_failed} unfinished' if result.requests_failed else ''}; "
        f"{result.simulated_s:.1f} simulated s in {wall:.2f} s wall ({result.events} events)"
    )
    if out:
        (out / "metrics.json").write_text(json.dumps(summary, indent=1))
        plot_run(log.events, out / "run.png", f"DSD-Sim: {scenario.name}")
        print(f"event log, metrics.json and run.png in {out}")
    if args.json:
        print(json.dumps(summary))
    return 1 if result.requests_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
