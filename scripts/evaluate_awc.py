"""Evaluate window policies (fixed γ, the heuristic, AWC) across links and load levels.

    python scripts/evaluate_awc.py --world sim [--json] [--out results]

Scenarios: a constant good and a constant bad link, one per recorded dataset family in
../shared/traces (LTE driving rates with an LTE RTT trace, 5G driving rates with 5G pings,
WiFi rates with a WiFi RTT trace, edge-vs-cloud RTT alone), and the LTE link at load levels
from one edge to server saturation. Each policy runs every scenario in the simulator with
the bundled pair's profile. Prints a table, writes a PNG, and ends with a JSON line whose
summary fields compare AWC with the best fixed γ in hindsight, fixed γ = 4 and the heuristic.
Only the simulated world is evaluated so far.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from emulator.scenario import ScenarioError, load_scenario
from emulator.sim.calibration import CalibrationError
from emulator.sim.simulation import SimOptions, Simulation
from runtime.events import EventLog
from runtime.metrics import summarise

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"
FIXED = [f"fixed:{g}" for g in range(1, 9)]
ADAPTIVE = ["heuristic", "awc", "awc:cloud", "oracle"]
SLO_TTFT_MS, SLO_TPOT_MS = 3000.0, 500.0
CPU = 0.7
LOAD_LEVELS = (1, 8, 32)


def recorded_links() -> dict[str, dict[str, str]]:
    """One link per dataset family; an empty dict when the recorded traces are absent."""
    if not SHARED.is_dir():
        return {}
    mahimahi = SHARED / "mahimahi" / "ATT-LTE-driving-2016"
    mecperf = SHARED / "mecperf"
    ucc = sorted((SHARED / "ucc-5g" / "driving").glob("*.csv"))[0]
    return {
        "lte-driving": {
            "up": f"mahimahi:{mahimahi}.up",
            "down": f"mahimahi:{mahimahi}.down",
            "rtt": f"mecperf:{mecperf / 'lte-TCPRTT-noise0M_Client_cloud_trace0.txt'}",
        },
        "5g-driving": {
            "trace": f"ucc:{ucc}",
            "rtt": f"5gophers:{SHARED / '5gophers' / 'ping-trace-01.log'}",
        },
        "wifi": {
            "trace": f"wifi-cellular:{SHARED / 'wifi-cellular' / '7_1_wifi.csv'}",
            "rtt": f"mecperf:{mecperf / 'wifi-TCPRTT-noise0M_Client_cloud_trace0.txt'}",
        },
        "edge-vs-cloud-rtt": {
            "up": f"mecperf:{mecperf / 'lte-TCPRTT-noise20M_Client_edge_trace0.txt'}",
            "down": f"mecperf:{mecperf / 'lte-TCPRTT-noise20M_Client_edge_trace0.txt'}",
        },
    }


def scenarios(folder: Path, quick: bool) -> dict[str, Path]:
    """Scenario files for the evaluation, written into ``folder``."""
    links: dict[str, tuple[dict[str, Any], int]] = {
        "constant-good": ({"constant": {"rate_mbps": 50, "delay_ms": 10}}, 1),
        "constant-bad": ({"constant": {"rate_mbps": 2, "delay_ms": 150, "loss_pct": 1}}, 1),
    }
    for name, link in recorded_links().items():
        links[name] = (link, 1)
    if "lte-driving" in links:
        for edges in LOAD_LEVELS[1:]:
            links[f"lte-driving-{edges}-edges"] = (links["lte-driving"][0], edges)
    paths = {}
    for name, (link, edges) in links.items():
        raw = {
            "name": name,
            "seed": 1,
            "cloud": {"model": "smollm2", "cpu": 1.0, "batching": {"max_batch": 8}},
            "edges": [{"name": "e", "count": edges, "draft": "int8", "cpu": CPU, "link": link}],
            "wan": {"constant": {"rate_mbps": 1000, "delay_ms": 2}},
            "workload": {"requests_per_edge": 2 if quick else 4, "max_new_tokens": 128},
        }
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        paths[name] = path
    return paths


def evaluate(path: Path, policy: str) -> dict[str, Any]:
    log = EventLog(None, "sim", keep=True)
    Simulation(load_scenario(path), log, SimOptions(policy=policy)).run()
    summary = summarise(log.events)
    requests = [e for e in log.events if e["event"] == "request" and not e.get("error")]
    good = sum(
        1
        for r in requests
        if (r["t_first_token"] - r["t_arrival"]) * 1000 <= SLO_TTFT_MS
        and (r["t_done"] - r["t_first_token"]) * 1000 / max(1, r["output_tokens"] - 1)
        <= SLO_TPOT_MS
    )
    verify_ms = sum(e["verify_ms"] for e in log.events if e["event"] == "batch")
    return {
        "throughput_tok_s": summary["throughput_tok_s"],
        "tpot_p50_ms": summary["tpot_ms"]["p50"],
        "tpot_p95_ms": summary["tpot_ms"]["p95"],
        "goodput_req_s": good / summary["duration_s"] if summary["duration_s"] else None,
        "tokens_per_round": summary["tokens_per_round"],
        "verify_ms_per_token": verify_ms / summary["output_tokens"],
        "gamma_mean": summary["gamma"]["mean"],
    }


def summarise_policies(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    ratios: dict[str, list[float]] = {"best": [], "fixed4": [], "heuristic": []}
    for per_policy in results.values():
        awc = per_policy["awc"]["throughput_tok_s"]
        best = max(per_policy[p]["throughput_tok_s"] for p in FIXED)
        ratios["best"].append(awc / best)
        ratios["fixed4"].append(awc / per_policy["fixed:4"]["throughput_tok_s"])
        ratios["heuristic"].append(awc / per_policy["heuristic"]["throughput_tok_s"])
    return {
        "awc_vs_best_fixed_min": min(ratios["best"]),
        "awc_vs_fixed4_mean": statistics.mean(ratios["fixed4"]),
        "awc_vs_heuristic_mean": statistics.mean(ratios["heuristic"]),
        "learned_vs_analytic_mean": None,  # the learned policy is not built yet
        "oracle_gap_mean": None,  # nor the simulator's oracle
    }


def plot(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    shown = ["fixed:1", "fixed:4", "fixed:8", *ADAPTIVE]
    figure, axis = plt.subplots(figsize=(max(8, len(names) * 1.2), 4.5))
    width = 0.8 / len(shown)
    for index, policy in enumerate(shown):
        values = []
        for name in names:
            best = max(results[name][p]["throughput_tok_s"] for p in FIXED)
            values.append(results[name][policy]["throughput_tok_s"] / best)
        axis.bar([i + index * width for i in range(len(names))], values, width, label=policy)
    axis.axhline(1.0, color="k", lw=0.8)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
    axis.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("throughput / best fixed γ")
    axis.legend(fontsize=7, ncol=3)
    axis.set_title("window policies in the simulator")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", choices=("sim",), default="sim", help="only sim so far")
    parser.add_argument("--quick", action="store_true", help="fewer requests per edge")
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    parser.add_argument("--json", action="store_true", help="last line: the results as JSON")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        try:
            paths = scenarios(Path(folder), args.quick)
            for name, path in paths.items():
                results[name] = {p: evaluate(path, p) for p in FIXED + ADAPTIVE}
                row = results[name]
                best = max(FIXED, key=lambda p: row[p]["throughput_tok_s"])
                print(
                    f"{name:<24} best {best:<8} {row[best]['throughput_tok_s']:6.2f} tok/s  "
                    f"fixed:4 {row['fixed:4']['throughput_tok_s']:6.2f}  "
                    f"heuristic {row['heuristic']['throughput_tok_s']:6.2f}  "
                    f"awc {row['awc']['throughput_tok_s']:6.2f} (γ {row['awc']['gamma_mean']:.1f})",
                    flush=True,
                )
        except (ScenarioError, CalibrationError) as exc:
            print(f"evaluate_awc: error: {exc}", file=sys.stderr)
            return 2
    summary = summarise_policies(results)
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-awc-{args.world}"
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "policies.png")
    document = {"world": args.world, "scenarios": results, "summary": summary}
    (out / "awc.json").write_text(json.dumps(document, indent=1))
    for key, value in summary.items():
        print(f"{key:>26}: {'-' if value is None else f'{value:.3f}'}")
    print(f"results in {out}")
    if args.json:
        print(json.dumps(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
