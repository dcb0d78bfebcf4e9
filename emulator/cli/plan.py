"""How many edge devices can this cloud serve, with which mode, on these networks: the
simulator's capacity plan of a scenario, at cloud scale.

    python scripts/plan_capacity.py topologies/dsd-paper.yaml [--json]
    python scripts/plan_capacity.py SCENARIO --target llama-2-70b@h100:tp4 --targets 4 \\
        --draft llama-2-7b@a40 --edges 10..10000 --slo-ttft 300 --slo-tpot 35
    python scripts/plan_capacity.py SCENARIO --ray local      # or --ray ADDRESS of a cluster

For every network (the scenario's own links and each recorded family beside the project),
every mode (DSD with AWC and at its best fixed γ, cloud-only, fused) and every edge count,
the simulator runs the scenario (``emulator.experiments.planner``); the points of one count
run at once on every local core, or as Ray tasks with ``--ray``. Results in
``results/<time>-plan/``: ``plan.md`` (one page), ``plan.json`` (``partial.json`` while it
runs), ``goodput.png`` and ``tpot.png``; with ``--json`` the last line is the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from emulator.experiments.planner import (
    PLAN_EDGES,
    PLAN_GAMMAS,
    CapacityPlan,
    PlanSettings,
    local_runner,
    modes_for,
    on_gpus,
    plan_settings,
    ray_runner,
)
from emulator.paths import ROOT
from emulator.report.plan_report import MEASURES, best_mode, plan_markdown, plot_plan
from emulator.scenario import ScenarioError, Slo
from emulator.sim.calibration import CalibrationError
from runtime.arguments import positive_float, positive_int
from runtime.process import stop_on_signals


def edge_counts(text: str) -> list[int]:
    """``10..10000`` (the default grid between the two) or a list ``10,100,1000``."""
    try:
        if ".." in text:
            low, high = (int(part) for part in text.split(".."))
            counts = [n for n in PLAN_EDGES if low <= n <= high] or [low, high]
            counts = sorted({low, *counts, high})
        else:
            counts = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW..HIGH or counts like 10,100, got {text!r}"
        ) from None
    if counts[0] < 1 or counts[-1] > 100_000:
        raise argparse.ArgumentTypeError(f"edge counts must be 1..100000, got {text!r}")
    return counts


def gamma_list(text: str) -> list[int]:
    try:
        gammas = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected windows like 2,4,6, got {text!r}") from None
    if gammas[0] < 1 or gammas[-1] > 16:
        raise argparse.ArgumentTypeError(f"windows must be 1..16, got {text!r}")
    return gammas


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--target", help="every target's model, e.g. llama-2-70b@h100:tp4")
    parser.add_argument("--targets", type=positive_int, help="how many targets (with --target)")
    parser.add_argument("--draft", help="every edge group's draft, e.g. llama-2-7b@a40")
    parser.add_argument(
        "--edges",
        type=edge_counts,
        default=list(PLAN_EDGES),
        help=f"LOW..HIGH or a list (default: {','.join(map(str, PLAN_EDGES))})",
    )
    parser.add_argument("--slo-ttft", type=positive_float, metavar="MS", help="TTFT SLO, ms")
    parser.add_argument("--slo-tpot", type=positive_float, metavar="MS", help="TPOT SLO, ms")
    parser.add_argument(
        "--networks",
        help="comma-separated: scenario and recorded families (default: all of them)",
    )
    parser.add_argument(
        "--gammas",
        type=gamma_list,
        default=list(PLAN_GAMMAS),
        help=f"the fixed windows tried for the best fixed γ (default: "
        f"{','.join(map(str, PLAN_GAMMAS))})",
    )
    parser.add_argument(
        "--requests", type=positive_int, help="requests per edge (default: the scenario's)"
    )
    parser.add_argument(
        "--fixed-rounds",
        action="store_true",
        help="DSD-Sim's semantics: DSD requests end after ceil(answer / γ) rounds (the modes "
        "with a fixed window only)",
    )
    parser.add_argument(
        "--profile", help="one profile JSON for every pair (default: as the scenario names them)"
    )
    parser.add_argument("--workers", type=positive_int, help="local processes (default: cores)")
    parser.add_argument("--ray", metavar="ADDRESS", help="run on Ray: 'local' or a cluster address")
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument("--json", action="store_true", help="last line: the summary as JSON")
    args = parser.parse_args(argv)
    if args.targets and not args.target:
        parser.error("--targets needs --target (the model of every target)")
    return args


def say(text: str) -> None:
    print(f"plan_capacity: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-plan"
    slo = None
    if args.slo_ttft or args.slo_tpot:
        slo = Slo(args.slo_ttft or Slo().ttft_ms, args.slo_tpot or Slo().tpot_ms)
    try:
        settings = plan_settings(
            args.scenario,
            out / "scenarios",
            slo,
            args.target,
            args.targets,
            args.draft,
            args.networks.split(",") if args.networks else None,
            args.requests,
            args.fixed_rounds,
            args.profile,
        )
        runner = ray_runner(args.ray) if args.ray else local_runner(args.workers)
    except (ScenarioError, ValueError, OSError) as exc:
        print(f"plan_capacity: error: {exc}", file=sys.stderr)
        return 2
    modes = modes_for(args.fixed_rounds)
    plan = CapacityPlan(args.scenario.resolve(), out, settings, args.edges, args.gammas, modes)
    say(f"networks {', '.join(settings.networks)}; edges {args.edges}; results in {out}")
    status, started = 0, time.perf_counter()
    try:
        plan.run(runner, say)
    except KeyboardInterrupt:
        say("interrupted; the finished edge counts are kept")
        status = 130
    except (CalibrationError, ScenarioError, ValueError) as exc:
        print(f"plan_capacity: error: {exc}; the finished edge counts are kept", file=sys.stderr)
        status = 1
    plan.wall_s = time.perf_counter() - started
    document = plan.document()
    plan.save("plan.json")
    if document["networks"]:
        for measure, name in zip(MEASURES, ("goodput.png", "tpot.png"), strict=True):
            plot_plan(document, measure, out / name)
        (out / "plan.md").write_text(plan_markdown(document, notes(settings, args)))
    for network, result in document["networks"].items():
        mode, capacity = best_mode(result["modes"])
        crossover = result["crossover_edges"]
        served = f"{mode} ({capacity})" if mode else "no mode, at any count swept"
        print(
            f"{network}: most edges within the SLOs: {served}; "
            + (
                f"DSD overtakes cloud-only from {crossover} edges"
                if crossover
                else "DSD does not overtake cloud-only at the counts swept"
            )
        )
    print(f"plan.md, plan.json and plots in {out} ({plan.wall_s:.0f} s)")
    if args.json:
        print(json.dumps(summary(document, out)))
    return status


def notes(settings: PlanSettings, args: argparse.Namespace) -> list[str]:
    """What a reader of plan.md needs beside the table: where the figures come from."""
    requests = args.requests or settings.raw.get("workload", {}).get("requests_per_edge", 2)
    lines = [
        "Every point is simulated (DSD-Sim, calibrated from profiles); none is emulated.",
        f"Each edge is one user with {requests} request(s), under the scenario's workload.",
    ]
    if args.fixed_rounds:
        lines.append(
            "DSD-Sim's fixed-round semantics: DSD requests end after ceil(answer / γ) rounds, "
            "credited their whole answer."
        )
    if on_gpus(settings.raw):
        lines.append(
            "Models on GPUs are priced from VIDUR's published operator tables; attention over "
            "the KV cache and the LM head are modelled (rooflines at vendor bandwidth and "
            "peak), not measured; acceptance is the scenario's, with its source."
        )
    return lines


def summary(document: dict, out: Path) -> dict:
    """The JSON line: per network and mode its capacity, the crossover, the points."""
    return {
        "results_dir": str(out),
        "wall_s": document["wall_s"],
        "slo": document["slo"],
        "modelled": document["modelled"],
        "networks": {
            network: {
                "crossover_edges": result["crossover_edges"],
                "modes": {
                    mode: {"capacity_edges": m["capacity_edges"], "points": m["points"]}
                    for mode, m in result["modes"].items()
                },
            }
            for network, result in document["networks"].items()
        },
    }


if __name__ == "__main__":
    raise SystemExit(main())
