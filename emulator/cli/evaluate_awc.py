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
import statistics
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from emulator.paths import ROOT
from emulator.report.plots import plot_gains, plot_policy_ratios
from emulator.run.child_runs import MainJobFailed, run_main_job
from emulator.scenario import ScenarioError, load_scenario
from emulator.sim.calibration import CalibrationError
from emulator.sim.simulation import SimOptions, Simulation
from emulator.traces.recorded import recorded_links
from runtime.events import EventLog
from runtime.metrics import summarise
from runtime.process import stop_on_signals

FIXED = [f"fixed:{g}" for g in range(1, 9)]
SIM_POLICIES = [*FIXED, "heuristic", "awc", "awc:server", "awc:cloud", "learned", "oracle"]
EMU_POLICIES = [
    "fixed:1",
    "fixed:2",
    "fixed:3",
    "fixed:4",
    "fixed:6",
    "heuristic",
    "awc",
    "awc:server",
    "learned",
]
SLO_TTFT_MS, SLO_TPOT_MS = 3000.0, 500.0
LOAD_LEVELS = (8, 32)
EDGE_CPU = 0.7  # one edge and the target fit the emulator's two cores beside the shapers
RECORDED = ("lte-driving", "5g-driving", "wifi", "3g-bus", "edge-vs-cloud-rtt")
EMU_RUN_TIMEOUT_S = 900


@dataclass
class Scenario:
    name: str
    path: Path
    time_varying: bool
    edges: int = 1


def workload(world: str, quick: bool) -> dict[str, int]:
    """Requests per edge and tokens: the emulator's runs are shorter (each loads the models)."""
    if world == "sim":
        return {"requests_per_edge": 2 if quick else 4, "max_new_tokens": 128}
    return {"requests_per_edge": 1 if quick else 2, "max_new_tokens": 64}


def write_scenarios(folder: Path, world: str, quick: bool, seed: int = 1) -> list[Scenario]:
    """Scenario files for the evaluation, written into ``folder``; in ``emu`` and ``both``
    only the emulator-sized ones."""
    links: dict[str, tuple[dict[str, Any], int]] = {
        "constant-good": ({"constant": {"rate_mbps": 50, "delay_ms": 10}}, 1),
        "constant-bad": ({"constant": {"rate_mbps": 2, "delay_ms": 150, "loss_pct": 1}}, 1),
    }
    for name, link in recorded_links().items():
        links[name] = (link, 1)
    if "lte-driving" in links and world == "sim":
        for edges in LOAD_LEVELS:
            links[f"lte-driving-{edges}-edges"] = (links["lte-driving"][0], edges)
    scenarios = []
    for name, (link, edges) in links.items():
        raw = {
            "name": name,
            "seed": seed,
            "cloud": {"model": "smollm2", "cpu": 1.0, "batching": {"max_batch": 8}},
            "edges": [
                {"name": "e", "count": edges, "draft": "int8", "cpu": EDGE_CPU, "link": link}
            ],
            "wan": {"constant": {"rate_mbps": 1000, "delay_ms": 2}},
            "workload": workload(world, quick),
        }
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        scenarios.append(Scenario(name, path, name.startswith(RECORDED), edges))
    return scenarios


def policy_metrics(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the evaluation reports of one run, from its event log (either world's)."""
    summary = summarise(events)
    requests = [e for e in events if e["event"] == "request" and not e.get("error")]
    good = sum(
        1
        for r in requests
        if (r["t_first_token"] - r["t_arrival"]) * 1000 <= SLO_TTFT_MS
        and (r["t_done"] - r["t_first_token"]) * 1000 / max(1, r["output_tokens"] - 1)
        <= SLO_TPOT_MS
    )
    verify_ms = sum(e["verify_ms"] for e in events if e["event"] == "batch")
    return {
        "throughput_tok_s": summary["throughput_tok_s"] or 0.0,
        "tpot_p50_ms": summary["tpot_ms"]["p50"],
        "tpot_p95_ms": summary["tpot_ms"]["p95"],
        "goodput_req_s": good / summary["duration_s"] if summary["duration_s"] else None,
        "tokens_per_round": summary["tokens_per_round"],
        "verify_ms_per_token": verify_ms / max(1, summary["output_tokens"]),
        "gamma_mean": summary["gamma"]["mean"],
    }


def simulate(path: Path, policy: str) -> dict[str, Any]:
    log = EventLog(None, "sim", keep=True)
    Simulation(load_scenario(path), log, SimOptions(policy=policy)).run()
    return policy_metrics(log.events)


def emulate(path: Path, policy: str, out: Path) -> dict[str, Any]:
    """One run of the main job (no simulation) with this policy on every edge."""
    try:
        run = run_main_job(path, out, EMU_RUN_TIMEOUT_S, "--policy", policy, "--no-sim")
    except MainJobFailed as exc:
        raise MainJobFailed(f"{path.stem} with {policy}: {exc}") from exc
    return {**policy_metrics(run.emulated_events()), "results_dir": str(run.results)}


def best_fixed(row: dict[str, dict[str, Any]]) -> float:
    """The throughput of the best fixed γ among those run: the best in hindsight."""
    return max(m["throughput_tok_s"] for p, m in row.items() if p.startswith("fixed:"))


def gain_pct(row: dict[str, dict[str, Any]], baseline: float) -> float:
    return (row["awc"]["throughput_tok_s"] / baseline - 1.0) * 100.0


def summarise_world(
    results: dict[str, dict[str, dict[str, Any]]], scenarios: list[Scenario]
) -> dict[str, Any]:
    """The summary fields: AWC against each baseline over the scenarios."""
    ratios: dict[str, list[float]] = {"best": [], "fixed4": [], "heuristic": [], "varying": []}
    learned, oracle, advised, shared = [], [], [], []
    for scenario in scenarios:
        row = results[scenario.name]
        awc = row["awc"]["throughput_tok_s"]
        ratios["best"].append(awc / best_fixed(row))
        if "awc:server" in row:
            advised.append(row["awc:server"]["throughput_tok_s"] / best_fixed(row))
            if scenario.edges > 1:
                shared.append(advised[-1])
        ratios["fixed4"].append(awc / row["fixed:4"]["throughput_tok_s"])
        ratios["heuristic"].append(awc / row["heuristic"]["throughput_tok_s"])
        if scenario.time_varying:
            ratios["varying"].append(awc / row["fixed:4"]["throughput_tok_s"])
        if "learned" in row:
            learned.append(row["learned"]["throughput_tok_s"] / awc)
        if "oracle" in row:
            oracle.append(row["oracle"]["throughput_tok_s"] / awc - 1.0)
    return {
        "awc_vs_best_fixed_min": min(ratios["best"]),
        "awc_vs_fixed4_mean": statistics.mean(ratios["fixed4"]),
        "awc_vs_fixed4_time_varying_mean": (
            statistics.mean(ratios["varying"]) if ratios["varying"] else None
        ),
        "awc_vs_heuristic_mean": statistics.mean(ratios["heuristic"]),
        "learned_vs_analytic_mean": statistics.mean(learned) if learned else None,
        "oracle_gap_mean": statistics.mean(oracle) if oracle else None,
        "awc_server_vs_best_fixed_min": min(advised) if advised else None,
        "awc_server_vs_best_fixed_shared_min": min(shared) if shared else None,
    }


def validate(
    sim: dict[str, dict[str, dict[str, Any]]], emu: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, dict[str, float]]:
    """AWC's gains over the best fixed γ (among those both worlds ran) and over the
    heuristic: predicted by the simulator, measured in the emulator, and their difference
    in percentage points."""
    rows = {}
    for name, measured in emu.items():
        predicted = sim[name]
        row: dict[str, float] = {}
        for baseline in ("best_fixed", "heuristic"):
            gains = {}
            for world, data in (("predicted", predicted), ("measured", measured)):
                reference = (
                    best_fixed(data)
                    if baseline == "best_fixed"
                    else data["heuristic"]["throughput_tok_s"]
                )
                gains[world] = gain_pct(data, reference)
                row[f"{world}_gain_vs_{baseline}_pct"] = gains[world]
            row[f"difference_vs_{baseline}_pp"] = gains["predicted"] - gains["measured"]
        rows[name] = row
    return rows


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


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def policy_tables(world: str, results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Every metric of every policy, one markdown table per scenario."""
    lines = []
    for name, row in results.items():
        best = best_fixed(row)
        lines += [
            f"### {world}: {name}",
            "",
            "| policy | tok/s | x best fixed | TPOT p50 ms | TPOT p95 ms | goodput req/s "
            "| tok/round | verify ms/tok | mean γ |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for policy, m in row.items():
            lines.append(
                f"| {policy} | {m['throughput_tok_s']:.2f} | {m['throughput_tok_s'] / best:.3f} "
                f"| {_number(m['tpot_p50_ms'], 0)} | {_number(m['tpot_p95_ms'], 0)} "
                f"| {_number(m['goodput_req_s'], 3)} | {_number(m['tokens_per_round'], 2)} "
                f"| {m['verify_ms_per_token']:.1f} | {_number(m['gamma_mean'], 1)} |"
            )
        lines.append("")
    return "\n".join(lines)


def validation_table(validation: dict[str, dict[str, float]]) -> str:
    lines = [
        "### AWC's gain: predicted (simulator) vs measured (emulator)",
        "",
        "| scenario | vs best fixed: predicted | measured | difference | vs heuristic: predicted "
        "| measured | difference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in validation.items():
        cells = [
            f"{row[f'{world}_gain_vs_{baseline}_pct']:+.1f} %"
            for baseline in ("best_fixed", "heuristic")
            for world in ("predicted", "measured")
        ]
        lines.append(
            f"| {name} | {cells[0]} | {cells[1]} | {row['difference_vs_best_fixed_pp']:+.1f} pp "
            f"| {cells[2]} | {cells[3]} | {row['difference_vs_heuristic_pp']:+.1f} pp |"
        )
    return "\n".join(lines) + "\n"


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
        results: dict[str, dict[str, dict[str, dict[str, Any]]]] = {"sim": {}, "emu": {}}
        try:
            for scenario in scenarios:
                for world in ("sim", "emu"):
                    if args.world not in (world, "both"):
                        continue
                    row = results[world][scenario.name] = {}
                    for policy in policies:
                        if world == "emu":
                            print(f"emu {scenario.name}: running {policy}", flush=True)
                            row[policy] = emulate(scenario.path, policy, out / "runs")
                        else:
                            row[policy] = simulate(scenario.path, policy)
                        # each run is kept at once: a failure or Ctrl-C loses none of them
                        # (written aside, then renamed: an interrupted write leaves the last)
                        partial.with_suffix(".tmp").write_text(json.dumps(results, indent=1))
                        partial.with_suffix(".tmp").replace(partial)
                    print_row(world, scenario.name, row)
        except (MainJobFailed, KeyboardInterrupt) as exc:
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            print(f"evaluate_awc: {why}; the runs done so far are in {partial}", file=sys.stderr)
            return 130 if isinstance(exc, KeyboardInterrupt) else 1
    sim, emu = results["sim"], results["emu"]
    partial.unlink()
    worlds = {}
    fixed = [p for p in policies if p.startswith("fixed:")]
    for world, runs in results.items():
        if runs:
            shown = ["fixed:1", "fixed:4", *(p for p in policies if p not in fixed)]
            plot_policy_ratios(runs, shown, fixed, out / f"policies-{world}.png")
            worlds[world] = {"scenarios": runs, "summary": summarise_world(runs, scenarios)}
    # the first world's results at the top; with ``both``, the emulator's under "emulated"
    document: dict[str, Any] = {
        "world": args.world,
        "slo_ms": {"ttft": SLO_TTFT_MS, "tpot": SLO_TPOT_MS},
        **worlds["sim" if sim else "emu"],
    }
    if args.world == "both":
        document["emulated"] = worlds["emu"]
        document["validation"] = validate(sim, emu)
        plot_gains(document["validation"], out / "gains.png")
    (out / "awc.json").write_text(json.dumps(document, indent=1))
    report = "\n".join(policy_tables(world, worlds[world]["scenarios"]) for world in worlds)
    if "validation" in document:
        report += "\n" + validation_table(document["validation"])
    (out / "awc.md").write_text(report)
    print("\n" + report)
    for key, value in document["summary"].items():
        print(f"{key:>34}: {_number(value, 3)}")
    print(f"results (awc.json, awc.md, PNGs) in {out}")
    if args.json:
        print(json.dumps(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
