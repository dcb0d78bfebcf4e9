"""Scoring the fidelity suite: each case's errors (over its repeats, with 95 % intervals:
``suite_stats``), distribution distances and time breakdowns, and each set's summary
(MAPE per metric with its interval, whether the policies the emulator tells apart rank
alike).

The targets: TPOT mean and p95, TTFT p50, throughput and tokens per round each within 5 %
MAPE, and the same ranking of resolved policy pairs in both worlds. A case's metric beyond
5 % is a *miss*. A miss of tokens per round is attributed to acceptance (or, where the
share of drafts accepted agrees, to the window policy's choice of γ); a miss of TTFT to
the part of the first token's path (uplink, prefill, server, downlink) whose simulated mean
differs most from the emulated one; any other time (or throughput) to that component of
the round time (draft, uplink, queue, verify, server, downlink).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator.experiments.suite_stats import (
    BOOTSTRAP,
    METRICS,
    Samples,
    case_errors,
    mape_with_interval,
    resolved_rank_agreement,
    run_samples,
)
from emulator.report.attribution import OVERLAPPING, compare_breakdowns
from emulator.report.fidelity import ks_distance, relative_error, round_trips, token_intervals
from runtime.metrics import summarise
from runtime.rounds import rounds_of

TARGET_ERROR = 0.05
TARGET_METRICS = (
    "tpot_mean_ms",
    "tpot_p95_ms",
    "ttft_p50_ms",
    "throughput_tok_s",
    "tokens_per_round",
)
Run = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # one seed: emulated, simulated events


def mape_key(metric: str) -> str:
    """``tpot_mean_ms`` -> ``tpot_mean_mape``, ``throughput_tok_s`` -> ``throughput_mape``."""
    for suffix in ("_tok_s", "_ms"):
        metric = metric.removesuffix(suffix)
    return f"{metric}_mape"


def score_case(
    runs: dict[int, Run], rng: np.random.Generator, times: int = BOOTSTRAP
) -> dict[str, Any]:
    """One case over its repeats (by seed): per metric both worlds' values, the error and
    its 95 % interval; the KS distances of per-round TPOT and of round trips; where the
    round time and the first token's time go; the misses and what each is attributed to.
    Also the bootstrap replicates of every error, for the suite's MAPE intervals."""
    seeds = sorted(runs)
    emu_events = [event for seed in seeds for event in runs[seed][0]]
    sim_events = [event for seed in seeds for event in runs[seed][1]]
    emu: list[Samples] = [run_samples(runs[seed][0]) for seed in seeds]
    sim: list[Samples] = [run_samples(runs[seed][1]) for seed in seeds]
    metrics = case_errors(emu, sim, rng, times)
    round_time = compare_breakdowns(emu_events, sim_events)
    first_token = compare_breakdowns(emu_events, sim_events, "first_token")
    misses = [
        name
        for name, row in metrics.items()
        if row["error"] is not None and abs(row["error"]) > TARGET_ERROR
    ]
    emu_summary, sim_summary = summarise(emu_events), summarise(sim_events)
    accepted = {
        "emu": emu_summary["acceptance_rate"],
        "sim": sim_summary["acceptance_rate"],
        "error": relative_error(emu_summary["acceptance_rate"], sim_summary["acceptance_rate"]),
    }
    gamma = {"emu": emu_summary["gamma"]["mean"], "sim": sim_summary["gamma"]["mean"]}
    per_round = {
        world: [v for seed in seeds for v in token_intervals(runs[seed][index])]
        for index, world in enumerate(("emu", "sim"))
    }
    trips = {
        world: [v for seed in seeds for v in round_trips(runs[seed][index])]
        for index, world in enumerate(("emu", "sim"))
    }
    score = {
        "repeats": len(seeds),
        "metrics": metrics,
        "throughput_by_seed": {
            world: {
                str(seed): run["throughput"][0]
                for seed, run in zip(seeds, samples, strict=True)
                if run["throughput"]
            }
            for world, samples in (("emu", emu), ("sim", sim))
        },
        "draft_cpu_ms": {
            "emu": mean_draft_cpu_ms(emu_events),
            "sim": mean_draft_cpu_ms(sim_events),
        },
        "ks_tpot": ks_distance(per_round["emu"], per_round["sim"]),
        "ks_round_trip": ks_distance(trips["emu"], trips["sim"]),
        "acceptance_rate": accepted,
        "gamma_mean": gamma,
        "round_time": round_time,
        "first_token_time": first_token,
        "misses": misses,
        "attributed_to": attribution(misses, round_time, first_token, accepted["error"]),
    }
    return score


def mean_draft_cpu_ms(events: list[dict[str, Any]]) -> float | None:
    """The drafting CPU time of a round, on average: what ``draft`` would be without waits
    for a CPU quota or a shared core (None for logs without it)."""
    values = [r.draft_cpu_ms for r in rounds_of(events) if r.draft_cpu_ms is not None]
    return sum(values) / len(values) if values else None


def _largest(compared: dict[str, dict[str, Any]]) -> str | None:
    additive = {name: row for name, row in compared.items() if name not in OVERLAPPING}
    if not additive:
        return None
    return max(additive, key=lambda name: abs(additive[name]["difference_ms"]))


def attribution(
    misses: list[str],
    round_time: dict[str, dict[str, Any]],
    first_token: dict[str, dict[str, Any]] | None = None,
    acceptance_error: float | None = None,
) -> list[str]:
    """What the misses come from. Where the rounds emitted a different number of tokens:
    ``acceptance`` if the share of drafted tokens accepted differs too (more than 5 %), else
    ``window choice`` (the same acceptance, other γ: a window policy that saw other times);
    for a miss of TTFT, the part of the first token's path (``first token: uplink``, ...)
    furthest from the emulated one; for any other time (or throughput), the round-time
    component furthest from it."""
    causes = []
    if "tokens_per_round" in misses:
        acceptance_differs = acceptance_error is None or abs(acceptance_error) > TARGET_ERROR
        causes.append("acceptance" if acceptance_differs else "window choice")
    first = [name for name in misses if name.startswith("ttft_")]
    if first and first_token and (part := _largest(first_token)):
        causes.append(f"first token: {part}")
    timed = set(misses) - {"tokens_per_round", *first}
    if timed and round_time and (part := _largest(round_time)):
        causes.append(part)
    return causes


def summarise_set(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One set's summary over its scored cases: per metric the MAPE and its 95 % interval,
    the mean KS distances, and rank agreement over the policy pairs the emulator resolves."""
    scored = {name: case for name, case in cases.items() if "score" in case}
    summary: dict[str, Any] = {"cases": len(cases)}
    for metric in METRICS:
        rows = [case["score"]["metrics"][metric] for case in scored.values()]
        value, bounds = mape_with_interval([r["error"] for r in rows], [r["ci"] for r in rows])
        summary[mape_key(metric)] = value
        summary[f"{mape_key(metric)}_ci"] = bounds
    for key in ("ks_tpot", "ks_round_trip"):
        values = [c["score"][key] for c in scored.values() if c["score"][key] is not None]
        summary[f"{key}_mean"] = sum(values) / len(values) if values else None
    groups: dict[str, dict[str, dict[str, list[float]]]] = {}
    for case in scored.values():
        by_seed = case["score"]["throughput_by_seed"]
        seeds = sorted(set(by_seed["emu"]) & set(by_seed["sim"]), key=int)
        groups.setdefault(case["group"], {})[case["policy"]] = {
            world: [by_seed[world][seed] for seed in seeds] for world in ("emu", "sim")
        }
    summary.update(resolved_rank_agreement(groups))
    summary["failed_cases"] = len(cases) - len(scored)
    met = [
        summary[mape_key(metric)] is not None and summary[mape_key(metric)] <= TARGET_ERROR
        for metric in TARGET_METRICS
    ]
    summary["targets_met"] = (
        bool(scored)
        and all(met)
        and summary["rank_agreement"] in (None, 1.0)
        and not summary["failed_cases"]
    )
    return summary


def summarise_suite(cases: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per set (``development``, ``held-out``, as the cases name theirs), its summary."""
    splits = sorted({case.get("split", "development") for case in cases.values()})
    return {
        split: summarise_set(
            {n: c for n, c in cases.items() if c.get("split", "development") == split}
        )
        for split in splits
    }


PAPER_METRICS = (
    "ttft_mean_ms",
    "ttft_p90_ms",
    "itl_mean_ms",
    "itl_p90_ms",
    "e2e_mean_ms",
    "e2e_p90_ms",
)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} %"


def _with_interval(value: float | None, bounds: list[float] | None, signed: bool = True) -> str:
    if value is None:
        return "-"
    shown = f"{value * 100:+.1f}" if signed else f"{value * 100:.1f}"
    if bounds is None:
        return f"{shown} %"
    low, high = (f"{b * 100:+.1f}" if signed else f"{b * 100:.1f}" for b in bounds)
    return f"{shown} % [{low}, {high}]"


def _breakdown_rows(compared: dict[str, dict[str, Any]], prefix: str = "") -> list[str]:
    rows = []
    for component, row in compared.items():
        share = "-" if row["share"] is None else f"{row['share'] * 100:.0f} %"
        rows.append(
            f"| {prefix}{component} | {row['emu_ms']:.1f} | {row['sim_ms']:.1f} "
            f"| {_percent(row['error'])} | {share} |"
        )
    return rows


def suite_markdown(cases: dict[str, dict[str, Any]], summaries: dict[str, dict[str, Any]]) -> str:
    """The report: per set its summary (MAPE with 95 % intervals, rank agreement), per case
    its errors with intervals, and per miss the breakdowns that attribute it."""
    splits = list(summaries)
    lines = [
        "## Summary per set (MAPE, 95 % interval)",
        "",
        "| measure | " + " | ".join(splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]
    for metric in METRICS:
        key = mape_key(metric)
        cells = [
            _with_interval(summaries[s][key], summaries[s][f"{key}_ci"], signed=False)
            for s in splits
        ]
        target = " (target ≤ 5 %)" if metric in TARGET_METRICS else ""
        lines.append(f"| {key}{target} | " + " | ".join(cells) + " |")
    for key in (
        "rank_agreement",
        "ranked_pairs",
        "unresolved_pairs",
        "ks_tpot_mean",
        "ks_round_trip_mean",
        "cases",
        "failed_cases",
        "targets_met",
    ):
        cells = []
        for split in splits:
            value = summaries[split][key]
            cells.append(f"{value:.3f}" if isinstance(value, float) else str(value))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for split in splits:
        members = {n: c for n, c in cases.items() if c.get("split", "development") == split}
        lines += [
            "",
            f"## {split}: simulated vs emulated per case (error, 95 % interval)",
            "",
            "| case | repeats | " + " | ".join(TARGET_METRICS) + " | KS TPOT | KS RTT |",
            "|---|---:|" + "---:|" * (len(TARGET_METRICS) + 2),
        ]
        for name, case in members.items():
            if "score" not in case:
                lines.append(f"| {name} | failed: {case.get('error', '?')} |")
                continue
            score = case["score"]
            cells = [
                _with_interval(score["metrics"][m]["error"], score["metrics"][m]["ci"])
                for m in TARGET_METRICS
            ]
            ks = [
                "-" if score[k] is None else f"{score[k]:.2f}" for k in ("ks_tpot", "ks_round_trip")
            ]
            lines.append(f"| {name} | {score['repeats']} | " + " | ".join(cells + ks) + " |")
        lines += [
            "",
            f"{split}, the latencies simulator-validation papers report (error):",
            "",
            "| case | " + " | ".join(PAPER_METRICS) + " |",
            "|---|" + "---:|" * len(PAPER_METRICS),
        ]
        for name, case in members.items():
            if "score" in case:
                errors = [_percent(case["score"]["metrics"][m]["error"]) for m in PAPER_METRICS]
                lines.append(f"| {name} | " + " | ".join(errors) + " |")
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
            *_breakdown_rows(score["round_time"]),
        ]
        cpu = score["draft_cpu_ms"]
        if cpu["emu"] is not None and cpu["sim"] is not None:
            lines.append(f"| (of draft: CPU time) | {cpu['emu']:.1f} | {cpu['sim']:.1f} | | |")
        accepted, gamma = score["acceptance_rate"], score["gamma_mean"]
        if accepted["emu"] is not None and accepted["sim"] is not None:
            lines.append(
                f"| (acceptance rate) | {accepted['emu']:.3f} | {accepted['sim']:.3f} "
                f"| {_percent(accepted['error'])} | |"
            )
        if gamma["emu"] is not None and gamma["sim"] is not None:
            lines.append(f"| (mean γ) | {gamma['emu']:.2f} | {gamma['sim']:.2f} | | |")
        lines += _breakdown_rows(score.get("first_token_time", {}), "first token: ")
        lines.append("")
    return "\n".join(lines) + "\n"
