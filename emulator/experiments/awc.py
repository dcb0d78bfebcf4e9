"""The window-policy evaluation: fixed γ, the heuristic, AWC alone and advised by the
server, the learned AWC and the oracle, across constant and recorded links and load levels,
in the simulator, the emulator or both (``dsd-emu evaluate-awc``). Each (world, scenario,
policy) is one case of ``emulator.experiments.runner``; the summary compares AWC with the
best fixed γ in hindsight, and with ``both`` AWC's gain predicted beside the gain measured."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emulator.experiments.runner import Case
from emulator.run.child_runs import MainJobFailed, run_main_job
from emulator.scenario import Overrides, load_scenario
from emulator.sim.simulation import Simulation
from emulator.traces.recorded import recorded_links
from runtime.events import EventLog
from runtime.metrics import summarise

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
    Simulation(load_scenario(path, Overrides(policy=policy)), log).run()
    return policy_metrics(log.events)


def emulate(path: Path, policy: str, out: Path) -> dict[str, Any]:
    """One run of the main job (no simulation) with this policy on every edge."""
    try:
        run = run_main_job(path, out, EMU_RUN_TIMEOUT_S, "--policy", policy, "--no-sim")
    except MainJobFailed as exc:
        raise MainJobFailed(f"{path.stem} with {policy}: {exc}") from exc
    return {**policy_metrics(run.emulated_events()), "results_dir": str(run.results)}


def evaluation_cases(
    scenarios: list[Scenario], worlds: list[str], policies: list[str]
) -> list[Case]:
    """Every (world, scenario, policy), a scenario's worlds and policies together."""
    return [
        Case(
            f"{world}/{scenario.name}/{policy}",
            f"{world} {scenario.name}: {policy}",
            {"world": world, "path": str(scenario.path), "policy": policy},
        )
        for scenario in scenarios
        for world in worlds
        for policy in policies
    ]


def run_case(case: Case, runs: Path) -> dict[str, Any]:
    """One case's metrics: simulated, or emulated by a child run of the main job."""
    path, policy = Path(case.settings["path"]), case.settings["policy"]
    if case.settings["world"] == "emu":
        return emulate(path, policy, runs)
    return simulate(path, policy)


def results_by_world(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The records as world -> scenario -> policy -> metrics (``partial.json``'s layout)."""
    results: dict[str, dict[str, Any]] = {"sim": {}, "emu": {}}
    for key, record in records.items():
        world, scenario, policy = key.split("/")
        results[world].setdefault(scenario, {})[policy] = record
    return results


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


def number_text(value: float | None, digits: int) -> str:
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
                f"| {number_text(m['tpot_p50_ms'], 0)} | {number_text(m['tpot_p95_ms'], 0)} "
                f"| {number_text(m['goodput_req_s'], 3)} | {number_text(m['tokens_per_round'], 2)} "
                f"| {m['verify_ms_per_token']:.1f} | {number_text(m['gamma_mean'], 1)} |"
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
