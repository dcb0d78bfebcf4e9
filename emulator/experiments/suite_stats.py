"""The statistics a 5 % claim needs: every error with a 95 % confidence interval, MAPE with
its interval, and rank agreement over the policy pairs the emulator can tell apart.

A case runs N times (repeats, other seeds); each run gives per-world samples — per request
its TTFT, TPOT and end-to-end latency, per round of it its inter-token latency (the round's
wait for its tokens over the tokens it emitted) and tokens emitted, and the run's
throughput. A metric is computed over the samples pooled across the repeats. Its interval
comes from a two-level bootstrap of pairs: the repeats are resampled (the two worlds of one
seed together), then the requests within each chosen run, each with its rounds and with its
counterpart in the other world (the same edge's n-th request: same prompt, same text), so
that what the two worlds share does not count as noise; throughput, one number per run,
only by the first level (no interval from a single run). A set's MAPE gets the interval
its cases' intervals imply. Percentiles need enough samples in both worlds: a p50 at least
5, a p90 or p95 at least 20, else the metric is not reported for the case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from emulator.report.fidelity import intervals_by_session, relative_error
from runtime.metrics import summarise
from runtime.rounds import rounds_of

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

REQUEST_KINDS = ("ttft", "tpot", "e2e")  # one value per request (None where it has none)
# the other kinds, "itl" and "emitted", hold one value per round of the request
Samples = dict[str, Any]  # "requests": key -> that request's samples; "throughput": [value]


def run_samples(events: list[dict[str, Any]]) -> Samples:
    """One run's samples, per request keyed by its edge and its place in the edge's order
    (the same key names the same request in both worlds)."""
    done = sorted(
        (e for e in events if e["event"] == "request" and not e.get("error")),
        key=lambda e: (str(e["edge"]), e["t_arrival"]),
    )
    intervals = intervals_by_session(events)
    emitted: dict[str, list[float]] = {}
    for record in rounds_of(events):
        emitted.setdefault(record.session, []).append(float(record.emitted))
    requests, order = {}, Counter()
    for request in done:
        edge = str(request["edge"])
        key = f"{edge}#{order[edge]}"
        order[edge] += 1
        ttft = tpot = e2e = None
        if request.get("t_first_token") is not None:
            ttft = (request["t_first_token"] - request["t_arrival"]) * 1000.0
            e2e = (request["t_done"] - request["t_arrival"]) * 1000.0
            if request["output_tokens"] > 1:
                span = request["t_done"] - request["t_first_token"]
                tpot = span * 1000.0 / (request["output_tokens"] - 1)
        requests[key] = {
            "ttft": ttft,
            "tpot": tpot,
            "e2e": e2e,
            "itl": intervals.get(request["session"], []),
            "emitted": emitted.get(request["session"], []),
        }
    throughput = summarise(events)["throughput_tok_s"]
    return {"requests": requests, "throughput": [] if throughput is None else [throughput]}


def statistic(values: np.ndarray, stat: str | int) -> float | None:
    if values.size == 0:
        return None
    if stat == "mean":
        return float(values.mean())
    if values.size < MIN_SAMPLES[int(stat)]:
        return None
    return float(np.percentile(values, stat))


def pooled(runs: Sequence[Samples], kind: str) -> np.ndarray:
    """Every sample of one kind over the runs' requests (or their throughputs)."""
    if kind in RUN_LEVEL:
        values = [v for run in runs for v in run[kind]]
    elif kind in REQUEST_KINDS:
        values = [r[kind] for run in runs for r in run["requests"].values() if r[kind] is not None]
    else:
        values = [v for run in runs for r in run["requests"].values() for v in r[kind]]
    return np.asarray(values, dtype=float)


def metric_values(runs: Sequence[Samples]) -> dict[str, float | None]:
    """Every metric over the runs' pooled samples."""
    return {name: statistic(pooled(runs, kind), stat) for name, (kind, stat) in METRICS.items()}


def _resampled_pair(
    emu: Samples, sim: Samples, rng: np.random.Generator
) -> tuple[Samples, Samples]:
    """One run's requests drawn with replacement, each with its counterpart in the other
    world (requests only one world finished are left out)."""
    keys = sorted(set(emu["requests"]) & set(sim["requests"]))
    chosen = [keys[i] for i in rng.integers(0, len(keys), len(keys))] if keys else []
    emu_drawn, sim_drawn = (
        {
            "requests": {f"{key}@{n}": run["requests"][key] for n, key in enumerate(chosen)},
            "throughput": run["throughput"],
        }
        for run in (emu, sim)
    )
    return emu_drawn, sim_drawn


def bootstrap_errors(
    emu: Sequence[Samples], sim: Sequence[Samples], rng: np.random.Generator, times: int
) -> dict[str, np.ndarray]:
    """Per metric, the relative error in each of ``times`` bootstrap replicates (NaN where
    a replicate cannot compute it)."""
    count = len(emu)
    errors = {name: np.full(times, np.nan) for name in METRICS}
    for replicate in range(times):
        pairs = [_resampled_pair(emu[i], sim[i], rng) for i in rng.integers(0, count, count)]
        emu_values = metric_values([e for e, _ in pairs])
        sim_values = metric_values([s for _, s in pairs])
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
