"""The statistics a 5 % claim needs: every error with a 95 % confidence interval, MAPE with
its interval, and rank agreement over the policy pairs the emulator can tell apart.

A case runs N times (repeats, other seeds); each run gives per-world samples — per request
its TTFT, TPOT and end-to-end latency, per round its inter-token latency (the round's wait
for its tokens over the tokens it emitted) and tokens emitted, and the run's throughput.
A metric is computed over the samples pooled across the repeats. Its interval comes from a
two-level bootstrap: the repeats are resampled (the two worlds of one seed together), then
the samples within each chosen run; throughput, one number per run, only by the first level
(no interval from a single run). A set's MAPE gets the interval its cases' intervals
imply. Percentiles need enough samples in both worlds: a p50 at
least 5, a p90 or p95 at least 20, else the metric is not reported for the case.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emulator.fidelity import relative_error, token_intervals
from runtime.metrics import summarise

# name -> (sample kind, statistic): "mean" or a percentile
METRICS: dict[str, tuple[str, str | int]] = {
    "ttft_mean_ms": ("ttft", "mean"),
    "ttft_p50_ms": ("ttft", 50),
    "ttft_p90_ms": ("ttft", 90),
    "itl_mean_ms": ("itl", "mean"),
    "itl_p90_ms": ("itl", 90),
    "tpot_mean_ms": ("tpot", "mean"),
    "tpot_p95_ms": ("itl", 95),  # from per-round samples: a run has few requests
    "e2e_mean_ms": ("e2e", "mean"),
    "e2e_p90_ms": ("e2e", 90),
    "throughput_tok_s": ("throughput", "mean"),
    "tokens_per_round": ("emitted", "mean"),
}
MIN_SAMPLES = {50: 5, 90: 20, 95: 20}
RUN_LEVEL = ("throughput",)  # one value per run
BOOTSTRAP = 1000
LEVEL = 0.95
# 97.5 % quantiles of Student's t by degrees of freedom (a suite repeats a case a few times;
# past 12 degrees the normal's 1.96 is within 10 %)
T_975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
}

Samples = dict[str, list[float]]


def run_samples(events: list[dict[str, Any]]) -> Samples:
    """One run's samples of every kind the metrics use."""
    requests = [e for e in events if e["event"] == "request" and not e.get("error")]
    ttft, tpot, e2e = [], [], []
    for request in requests:
        if request.get("t_first_token") is None:
            continue
        ttft.append((request["t_first_token"] - request["t_arrival"]) * 1000.0)
        e2e.append((request["t_done"] - request["t_arrival"]) * 1000.0)
        if request["output_tokens"] > 1:
            span = request["t_done"] - request["t_first_token"]
            tpot.append(span * 1000.0 / (request["output_tokens"] - 1))
    throughput = summarise(events)["throughput_tok_s"]
    return {
        "ttft": ttft,
        "tpot": tpot,
        "e2e": e2e,
        "itl": token_intervals(events),
        "emitted": [float(e["emitted"]) for e in events if e["event"] == "round"],
        "throughput": [] if throughput is None else [throughput],
    }


def statistic(values: np.ndarray, stat: str | int) -> float | None:
    if values.size == 0:
        return None
    if stat == "mean":
        return float(values.mean())
    if values.size < MIN_SAMPLES[int(stat)]:
        return None
    return float(np.percentile(values, stat))


def pooled(runs: Sequence[Samples], kind: str) -> np.ndarray:
    return np.concatenate([np.asarray(run[kind], dtype=float) for run in runs] or [np.empty(0)])


def metric_values(runs: Sequence[Samples]) -> dict[str, float | None]:
    """Every metric over the runs' pooled samples."""
    return {name: statistic(pooled(runs, kind), stat) for name, (kind, stat) in METRICS.items()}


def _resampled(run: Samples, rng: np.random.Generator) -> Samples:
    out = {}
    for kind, values in run.items():
        if kind in RUN_LEVEL or not values:
            out[kind] = values
        else:
            out[kind] = list(np.asarray(values)[rng.integers(0, len(values), len(values))])
    return out


def bootstrap_errors(
    emu: Sequence[Samples], sim: Sequence[Samples], rng: np.random.Generator, times: int
) -> dict[str, np.ndarray]:
    """Per metric, the relative error in each of ``times`` bootstrap replicates (NaN where
    a replicate cannot compute it)."""
    count = len(emu)
    errors = {name: np.full(times, np.nan) for name in METRICS}
    for replicate in range(times):
        chosen = rng.integers(0, count, count)
        emu_values = metric_values([_resampled(emu[i], rng) for i in chosen])
        sim_values = metric_values([_resampled(sim[i], rng) for i in chosen])
        for name in METRICS:
            error = relative_error(emu_values[name], sim_values[name])
            if error is not None:
                errors[name][replicate] = error
    return errors


def interval(replicates: np.ndarray) -> list[float] | None:
    """The central 95 % of the replicates that exist (None with fewer than half existing)."""
    present = replicates[~np.isnan(replicates)]
    if present.size < replicates.size / 2 or present.size == 0:
        return None
    low, high = np.percentile(present, [50 * (1 - LEVEL), 100 - 50 * (1 - LEVEL)])
    return [float(low), float(high)]


def case_errors(
    emu: Sequence[Samples], sim: Sequence[Samples], rng: np.random.Generator, times: int
) -> dict[str, dict[str, Any]]:
    """Per metric both worlds' values, the error and its interval (none for a per-run
    metric of a single run)."""
    emu_values, sim_values = metric_values(emu), metric_values(sim)
    replicates = bootstrap_errors(emu, sim, rng, times)
    rows = {}
    for name, (kind, _) in METRICS.items():
        error = relative_error(emu_values[name], sim_values[name])
        no_spread = kind in RUN_LEVEL and len(emu) < 2
        rows[name] = {
            "emu": emu_values[name],
            "sim": sim_values[name],
            "error": error,
            "ci": None if error is None or no_spread else interval(replicates[name]),
            "samples": [int(pooled(emu, kind).size), int(pooled(sim, kind).size)],
        }
    return rows


def mape_with_interval(
    errors: list[float | None], intervals: list[list[float] | None]
) -> tuple[float | None, list[float] | None]:
    """Mean absolute error over the cases that have the metric, and an interval that holds
    it whatever each case's error is within its own interval: from the mean of each
    interval's nearest distance to zero (zero where it spans zero) to the mean of its
    farthest. None where a case has no interval (the interval of |error| itself would be
    biased away from zero)."""
    present = [(e, i) for e, i in zip(errors, intervals, strict=True) if e is not None]
    if not present:
        return None, None
    value = float(np.mean([abs(e) for e, _ in present]))
    if any(bounds is None for _, bounds in present):
        return value, None
    near = [0.0 if low <= 0.0 <= high else min(abs(low), abs(high)) for _, (low, high) in present]
    far = [max(abs(low), abs(high)) for _, (low, high) in present]
    return value, [float(np.mean(near)), float(np.mean(far))]


def t_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """Student's t 95 % interval of the mean (None below two values)."""
    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=float)
    half = T_975.get(len(data) - 1, 1.96) * data.std(ddof=1) / np.sqrt(len(data))
    return float(data.mean() - half), float(data.mean() + half)


def resolved_rank_agreement(
    groups: dict[str, dict[str, dict[str, list[float]]]],
) -> dict[str, Any]:
    """Of the policy pairs within each group whose emulated throughput gap (paired by seed
    over the repeats) has a 95 % interval that excludes zero, the share the simulator orders
    the same way; the other pairs are counted as unresolved."""
    agreeing = resolved = unresolved = 0
    for policies in groups.values():
        names = sorted(policies)
        for index, a in enumerate(names):
            for b in names[index + 1 :]:
                emu_a, emu_b = policies[a]["emu"], policies[b]["emu"]
                count = min(len(emu_a), len(emu_b))
                gaps = [emu_a[i] - emu_b[i] for i in range(count)]
                bounds = t_interval(gaps)
                if bounds is None or bounds[0] <= 0.0 <= bounds[1]:
                    unresolved += 1
                    continue
                resolved += 1
                sim_gap = np.mean(policies[a]["sim"][:count]) - np.mean(policies[b]["sim"][:count])
                agreeing += bool(np.sign(sim_gap) == np.sign(np.mean(gaps)))
    return {
        "rank_agreement": agreeing / resolved if resolved else None,
        "ranked_pairs": resolved,
        "unresolved_pairs": unresolved,
    }
