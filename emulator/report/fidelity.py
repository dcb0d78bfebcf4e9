"""How closely the simulator predicted an emulated run: the same metrics from both event
logs, side by side, with the relative error of each (sim − emu) / emu; and the measures a
suite of runs is judged by (distribution distance, MAPE, whether policies rank alike)."""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.rounds import rounds_of

METRICS = (
    ("ttft_p50_ms", ("ttft_ms", "p50")),
    ("tpot_mean_ms", ("tpot_ms", "mean")),
    ("tpot_p50_ms", ("tpot_ms", "p50")),
    ("tpot_p95_ms", ("tpot_ms", "p95")),
    ("throughput_tok_s", ("throughput_tok_s",)),
    ("acceptance", ("acceptance_rate",)),
    ("tokens_per_round", ("tokens_per_round",)),
    ("round_trip_p50_ms", ("round_trip_ms", "p50")),
)


def _value(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def relative_error(emu: float | None, sim: float | None) -> float | None:
    if emu is None or sim is None or emu == 0:
        return None
    return (sim - emu) / abs(emu)


def headline(summary: dict[str, Any]) -> dict[str, float | None]:
    """The compared metrics of one summary, by name."""
    return {name: _value(summary, path) for name, path in METRICS}


def compare_scope(emu: dict[str, Any], sim: dict[str, Any]) -> dict[str, dict[str, Any]]:
    emulated, simulated = headline(emu), headline(sim)
    return {
        name: {"emu": e, "sim": simulated[name], "error": relative_error(e, simulated[name])}
        for name, e in emulated.items()
    }


def compare(emu: dict[str, Any], sim: dict[str, Any]) -> dict[str, Any]:
    """Overall and per-edge comparison of two ``runtime.metrics.summarise`` results."""
    edges = sorted(set(emu.get("per_edge", {})) & set(sim.get("per_edge", {})))
    return {
        "overall": compare_scope(emu, sim),
        "per_edge": {e: compare_scope(emu["per_edge"][e], sim["per_edge"][e]) for e in edges},
    }


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_fidelity(comparison: dict[str, Any], max_edges: int = 16) -> str:
    """A table: per scope and metric, emulated, simulated and the relative error."""
    header = f"{'scope':<10}{'metric':<18}{'emulated':>11}{'simulated':>11}{'error':>9}"
    lines = [header, "-" * len(header)]
    scopes = [("overall", comparison["overall"])]
    scopes += list(comparison["per_edge"].items())[:max_edges]
    for scope, rows in scopes:
        for index, (metric, row) in enumerate(rows.items()):
            error = row["error"]
            lines.append(
                f"{scope if index == 0 else '':<10}{metric:<18}"
                f"{_cell(row['emu'], '11.2f'):>11}{_cell(row['sim'], '11.2f'):>11}"
                f"{'-' if error is None else f'{error * 100:+.1f}%':>9}"
            )
    hidden = len(comparison["per_edge"]) - max_edges
    if hidden > 0:
        lines.append(f"... and {hidden} more edges (all in metrics.json)")
    return "\n".join(lines)


def headline_errors(comparison: dict[str, Any]) -> dict[str, float | None]:
    """The overall relative error of each metric (for the JSON summary line)."""
    return {metric: row["error"] for metric, row in comparison["overall"].items()}


def ks_distance(a: list[float], b: list[float]) -> float | None:
    """The two-sample Kolmogorov–Smirnov statistic: the largest gap between the two
    empirical CDFs (0: the same distribution of samples, 1: disjoint)."""
    if not a or not b:
        return None
    xs, ys = np.sort(a), np.sort(b)
    grid = np.concatenate([xs, ys])
    gap = np.searchsorted(xs, grid, side="right") / len(xs) - np.searchsorted(
        ys, grid, side="right"
    ) / len(ys)
    return float(np.max(np.abs(gap)))


def mape(errors: list[float | None]) -> float | None:
    """Mean absolute relative error over the errors that exist."""
    present = [abs(e) for e in errors if e is not None]
    return float(np.mean(present)) if present else None


def ranked_pairs(emu: dict[str, float], sim: dict[str, float]) -> tuple[int, int]:
    """Of the pairs of policies, how many both worlds order the same way, and how many
    there are; pairs tied in either world count as agreeing."""
    names = sorted(set(emu) & set(sim))
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    same = sum(np.sign(emu[a] - emu[b]) * np.sign(sim[a] - sim[b]) >= 0 for a, b in pairs)
    return int(same), len(pairs)


def rank_agreement(emu: dict[str, float], sim: dict[str, float]) -> float | None:
    """The share of pairs of policies that both worlds order the same way (1.0: the same
    ranking); pairs tied in either world count as agreeing."""
    same, pairs = ranked_pairs(emu, sim)
    return same / pairs if pairs else None


def intervals_by_session(events: list[dict[str, Any]]) -> dict[str, list[float]]:
    """TPOT at the grain of rounds, per request (session): per round, the time since the
    request's previous tokens arrived divided by the tokens this round emitted (ms)."""
    first = {
        e["session"]: e["t_first_token"]
        for e in events
        if e["event"] == "request" and e.get("t_first_token") is not None
    }
    rounds = sorted(
        (r for r in rounds_of(events) if r.session in first), key=lambda r: (r.session, r.round)
    )
    intervals: dict[str, list[float]] = {session: [] for session in first}
    last = dict(first)
    for record in rounds:
        if record.emitted > 0:
            interval = (record.t_recv - last[record.session]) * 1000.0 / record.emitted
            intervals[record.session].append(interval)
        last[record.session] = record.t_recv
    return intervals


def token_intervals(events: list[dict[str, Any]]) -> list[float]:
    """Per-round TPOT samples of a whole run (``intervals_by_session``, every request's in
    turn): a short run gives a handful of requests but many rounds, enough for a
    distribution."""
    return [v for values in intervals_by_session(events).values() for v in values]


def round_trips(events: list[dict[str, Any]]) -> list[float]:
    """Each round's wait at the edge, from sending the draft to the verdict (ms)."""
    return [(r.t_recv - r.t_send) * 1000.0 for r in rounds_of(events) if r.t_send is not None]
