"""Scoring the fidelity suite: each case's errors, distribution distances and round-time
breakdown, and the suite's summary (MAPE per metric, whether the policies rank alike).

The targets are the issue's: every MAPE at most 5 % and the same ranking of policies in
both worlds. A case's metric beyond 5 % is a *miss*. A miss of tokens per round (or of the
acceptance rate) is attributed to acceptance; a miss of a time or of throughput to the
component of the round time (draft, uplink, queue, verify, server, downlink) whose
simulated mean differs most from the emulated one.
"""

from __future__ import annotations

from typing import Any

from emulator.attribution import compare_breakdowns
from emulator.fidelity import (
    compare_scope,
    ks_distance,
    mape,
    ranked_pairs,
    round_trips,
    token_intervals,
)
from runtime.metrics import summarise

TARGET_ERROR = 0.05
TARGET_METRICS = ("tpot_mean_ms", "tpot_p95_ms", "throughput_tok_s", "tokens_per_round")


def mape_key(metric: str) -> str:
    """``tpot_mean_ms`` -> ``tpot_mean_mape``, ``throughput_tok_s`` -> ``throughput_mape``."""
    for suffix in ("_tok_s", "_ms"):
        metric = metric.removesuffix(suffix)
    return f"{metric}_mape"


def score_run(emu_events: list[dict[str, Any]], sim_events: list[dict[str, Any]]) -> dict[str, Any]:
    """One case: per metric both values and the error, the Kolmogorov–Smirnov distance of
    per-round TPOT and of round trips, the round-time breakdown, and the misses with the
    component each is attributed to."""
    metrics = compare_scope(summarise(emu_events), summarise(sim_events))
    round_time = compare_breakdowns(emu_events, sim_events)
    misses = [
        name
        for name, row in metrics.items()
        if row["error"] is not None and abs(row["error"]) > TARGET_ERROR
    ]
    return {
        "metrics": metrics,
        "draft_cpu_ms": {
            "emu": mean_draft_cpu_ms(emu_events),
            "sim": mean_draft_cpu_ms(sim_events),
        },
        "ks_tpot": ks_distance(token_intervals(emu_events), token_intervals(sim_events)),
        "ks_round_trip": ks_distance(round_trips(emu_events), round_trips(sim_events)),
        "round_time": round_time,
        "misses": misses,
        "attributed_to": attribution(misses, round_time),
    }


def mean_draft_cpu_ms(events: list[dict[str, Any]]) -> float | None:
    """The drafting CPU time of a round, on average: what ``draft`` would be without waits
    for a CPU quota or a shared core (None for logs without it)."""
    values = [e["draft_cpu_ms"] for e in events if e["event"] == "round" and "draft_cpu_ms" in e]
    return sum(values) / len(values) if values else None


def attribution(misses: list[str], round_time: dict[str, dict[str, Any]]) -> list[str]:
    """What the misses come from: ``acceptance`` where the rounds emitted a different number
    of tokens, and the round-time component whose simulated mean is furthest from the
    emulated one where a time (or throughput) is off."""
    causes = []
    if {"acceptance", "tokens_per_round"} & set(misses):
        causes.append("acceptance")
    timed = set(misses) - {"acceptance", "tokens_per_round"}
    if timed and round_time:
        causes.append(max(round_time, key=lambda name: abs(round_time[name]["difference_ms"])))
    return causes


def summarise_suite(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The summary over the scored cases: MAPE of every metric, the mean KS distances, and
    the share of policy pairs, within each group, that rank the same in both worlds."""
    scored = [case for case in cases.values() if "score" in case]
    summary: dict[str, Any] = {}
    for metric in scored[0]["score"]["metrics"] if scored else ():
        summary[mape_key(metric)] = mape([c["score"]["metrics"][metric]["error"] for c in scored])
    for key in ("ks_tpot", "ks_round_trip"):
        values = [c["score"][key] for c in scored if c["score"][key] is not None]
        summary[f"{key}_mean"] = sum(values) / len(values) if values else None
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for case in scored:
        throughput = case["score"]["metrics"]["throughput_tok_s"]
        if throughput["emu"] is not None and throughput["sim"] is not None:
            worlds = groups.setdefault(case["group"], {"emu": {}, "sim": {}})
            worlds["emu"][case["policy"]] = throughput["emu"]
            worlds["sim"][case["policy"]] = throughput["sim"]
    same = pairs = 0
    for worlds in groups.values():
        agreeing, count = ranked_pairs(worlds["emu"], worlds["sim"])
        same, pairs = same + agreeing, pairs + count
    summary["rank_agreement"] = same / pairs if pairs else None
    summary["ranked_pairs"] = pairs
    summary["failed_cases"] = len(cases) - len(scored)
    met = [
        summary.get(mape_key(metric)) is not None and summary[mape_key(metric)] <= TARGET_ERROR
        for metric in TARGET_METRICS
    ]
    summary["targets_met"] = (
        bool(scored)
        and all(met)
        and summary["rank_agreement"] in (None, 1.0)
        and not summary["failed_cases"]
    )
    return summary


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} %"


def suite_markdown(cases: dict[str, dict[str, Any]], summary: dict[str, Any]) -> str:
    """The report: one row per case with its errors, the summary, and per miss the
    round-time breakdown that attributes it."""
    metrics = next((list(c["score"]["metrics"]) for c in cases.values() if "score" in c), [])
    lines = [
        "## Simulated vs emulated, per case (relative error of the simulator)",
        "",
        "| case | " + " | ".join(metrics) + " | KS TPOT | KS RTT |",
        "|---|" + "---:|" * (len(metrics) + 2),
    ]
    for name, case in cases.items():
        if "score" not in case:
            lines.append(f"| {name} | failed: {case.get('error', '?')} |")
            continue
        score = case["score"]
        cells = [_percent(score["metrics"][m]["error"]) for m in metrics]
        ks = ["-" if score[k] is None else f"{score[k]:.2f}" for k in ("ks_tpot", "ks_round_trip")]
        lines.append(f"| {name} | " + " | ".join(cells + ks) + " |")
    lines += ["", "## Summary", "", "| measure | value |", "|---|---:|"]
    for key, value in summary.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    missed = {name: case for name, case in cases.items() if case.get("score", {}).get("misses")}
    if missed:
        lines += ["", "## Misses and their attribution", ""]
    for name, case in missed.items():
        score = case["score"]
        lines += [
            f"### {name}: {', '.join(score['misses'])}; "
            f"attributed to: {', '.join(score['attributed_to']) or 'no rounds'}",
            "",
            "| component | emulated ms | simulated ms | error | share of the difference |",
            "|---|---:|---:|---:|---:|",
        ]
        for component, row in score["round_time"].items():
            share = "-" if row["share"] is None else f"{row['share'] * 100:.0f} %"
            lines.append(
                f"| {component} | {row['emu_ms']:.1f} | {row['sim_ms']:.1f} "
                f"| {_percent(row['error'])} | {share} |"
            )
        cpu = score["draft_cpu_ms"]
        if cpu["emu"] is not None and cpu["sim"] is not None:
            lines.append(f"| (of draft: CPU time) | {cpu['emu']:.1f} | {cpu['sim']:.1f} | | |")
        lines.append("")
    return "\n".join(lines) + "\n"
