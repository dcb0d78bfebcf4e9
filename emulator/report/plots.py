"""PNG plots of one run's event log (emulated or simulated): what a person looks at first.

One figure, three panels: the TPOT distribution (CDF) per edge group, each edge's round
trip over time, and the window γ each edge chose over time. Many edges are summarised by
their group so that a 1,000-edge simulation stays readable.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from runtime.rounds import RoundRecord, rounds_of

MAX_LINES = 8


def edge_group(edge: str) -> str:
    """The group of a host name (``lte12`` -> ``lte``)."""
    return re.sub(r"\d+$", "", edge) or edge


def _tpot_ms(request: dict[str, Any]) -> float | None:
    if request.get("error") or request.get("t_first_token") is None:
        return None
    if request["output_tokens"] < 2:
        return None
    span = request["t_done"] - request["t_first_token"]
    return span * 1000.0 / (request["output_tokens"] - 1)


def plot_run(events: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Draw the run's figure into ``path`` (PNG) and return the path."""
    plt = pyplot()
    rounds = _rounds_by_edge(events)
    start = _start(events)
    tpots: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.get("event") == "request" and (tpot := _tpot_ms(event)) is not None:
            tpots[edge_group(event["edge"])].append(tpot)
    figure, (cdf, rtt, window) = plt.subplots(3, 1, figsize=(9, 10))
    for group, values in sorted(tpots.items()):
        ordered = np.sort(values)
        cdf.step(ordered, np.arange(1, len(ordered) + 1) / len(ordered), where="post", label=group)
    cdf.set_xlabel("TPOT (ms)")
    cdf.set_ylabel("fraction of requests")
    cdf.set_title("time per output token")
    shown = sorted(rounds)[:MAX_LINES]
    for edge in shown:
        data = rounds[edge]
        times = [r.t_recv - start for r in data]
        rtt.plot(times, [(r.t_recv - r.t_send) * 1000.0 for r in data], ".", ms=3, label=edge)
        window.plot(times, [r.gamma for r in data], ".", ms=3, label=edge)
    rtt.set_ylabel("round trip (ms)")
    rtt.set_title("verify round trip per round (send to verdict)")
    window.set_ylabel("γ")
    window.set_xlabel("time since the first request (s)")
    window.set_title("window chosen per round")
    hidden = len(rounds) - len(shown)
    for axis in (cdf, rtt, window):
        if axis.has_data():
            axis.legend(fontsize=7, ncol=4, title=f"+{hidden} edges not shown" if hidden else None)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display on these machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt: Any, figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` and free it."""
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _rounds_by_edge(events: list[dict[str, Any]]) -> dict[str, list[RoundRecord]]:
    """Each edge's DSD rounds (those with a send time: a streaming session's have none)."""
    rounds: dict[str, list[RoundRecord]] = defaultdict(list)
    for record in rounds_of(events):
        if record.t_send is not None:
            rounds[record.edge].append(record)
    return rounds


def _start(events: list[dict[str, Any]]) -> float:
    return min((e["t_arrival"] for e in events if e.get("event") == "request"), default=0.0)


def plot_links(
    events: list[dict[str, Any]],
    links: dict[str, tuple[Any, Any | None]],
    t_start: float,
    path: Path,
) -> Path:
    """Per edge: the path RTT its traces set (access + WAN delays, both ways) and its
    downlink rate over time, with the network part of every measured round trip (round trip
    minus the server's time) on top."""
    plt = pyplot()
    rounds = _rounds_by_edge(events)
    edges = sorted(links)[:MAX_LINES]
    figure, axes = plt.subplots(len(edges), 1, figsize=(9, 2.6 * len(edges)), squeeze=False)
    end = max((r.t_recv - t_start for rs in rounds.values() for r in rs), default=60.0)
    times = np.linspace(0.0, max(end, 1.0), 600)
    for axis, edge in zip(axes[:, 0], edges, strict=True):
        access, wan = links[edge]

        def path_rtt(t: float, access: Any = access, wan: Any = wan) -> float:
            total = 0.0
            for trace in (access, wan):
                if trace is None:
                    continue
                at = t % trace.duration_s
                total += np.nan_to_num(trace.at(at, "up").delay_ms)
                total += np.nan_to_num(trace.at(at, "down").delay_ms)
            return total

        axis.step(times, [path_rtt(t) for t in times], where="post", label="trace RTT")
        measured = [
            (
                r.t_send - t_start,
                (r.t_recv - r.t_send - (r.server_t_send - r.server_t_recv)) * 1000,
            )
            for r in rounds.get(edge, [])
        ]
        if measured:
            axis.plot(*zip(*measured, strict=True), ".", ms=4, label="measured (network part)")
        axis.set_yscale("log")  # outages hold packets for seconds; keep the ms visible
        axis.set_ylabel("RTT (ms)")
        axis.set_title(edge, fontsize=9)
        rate_axis = axis.twinx()
        rates = [access.at(t % access.duration_s, "down").rate_mbps for t in times]
        rate_axis.plot(times, rates, color="grey", alpha=0.5, lw=0.8)
        rate_axis.set_ylabel("down Mbit/s", color="grey")
        axis.legend(fontsize=7, loc="upper left")
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time since the workload started (s)")
    return save_figure(plt, figure, path)


def plot_gamma(worlds: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """γ chosen per round over time, one panel per world."""
    plt = pyplot()
    figure, axes = plt.subplots(len(worlds), 1, figsize=(9, 3 * len(worlds)), squeeze=False)
    for axis, (world, events) in zip(axes[:, 0], worlds.items(), strict=True):
        start = _start(events)
        for edge, data in sorted(_rounds_by_edge(events).items())[:MAX_LINES]:
            axis.plot(
                [r.t_send - start for r in data],
                [r.gamma for r in data],
                ".",
                ms=3,
                label=edge,
            )
        axis.set_title(world, fontsize=9)
        axis.set_ylabel("γ")
        axis.grid(alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("time since the first request (s)")
    return save_figure(plt, figure, path)


def plot_tpot_cdfs(worlds: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """The TPOT distribution of every request, one curve per world."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    for world, events in worlds.items():
        values = np.sort(
            [t for e in events if e.get("event") == "request" and (t := _tpot_ms(e)) is not None]
        )
        if values.size:
            axis.step(
                values,
                np.arange(1, values.size + 1) / values.size,
                where="post",
                label=f"{world} ({values.size} requests)",
            )
    axis.set_xlabel("TPOT (ms)")
    axis.set_ylabel("fraction of requests")
    axis.grid(alpha=0.3)
    if axis.has_data():
        axis.legend()
    return save_figure(plt, figure, path)


def acceptance_per_position(events: list[dict[str, Any]]) -> list[float | None]:
    """P(draft token i accepted | tokens 0..i-1 were), from the rounds of a run."""
    reached: dict[int, int] = defaultdict(int)
    accepted: dict[int, int] = defaultdict(int)
    for event in events:
        if event.get("event") != "round" or event.get("t_send") is None:
            continue
        for position in range(min(event["accepted"] + 1, event["gamma"])):
            reached[position] += 1
            accepted[position] += position < event["accepted"]
    size = max(reached, default=-1) + 1
    return [accepted[i] / reached[i] if reached[i] else None for i in range(size)]


def plot_acceptance(
    worlds: dict[str, list[dict[str, Any]]], profiled: list[float], path: Path
) -> Path:
    """Per-position acceptance: as profiled, and as each world's rounds show it."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(range(1, len(profiled) + 1), profiled, "k--", label="profile")
    for world, events in worlds.items():
        table = acceptance_per_position(events)
        points = [(i + 1, a) for i, a in enumerate(table) if a is not None]
        if points:
            axis.plot(*zip(*points, strict=True), "o-", label=world)
    axis.set_xlabel("draft position")
    axis.set_ylabel("P(accepted | earlier ones were)")
    axis.set_ylim(0, 1.05)
    axis.grid(alpha=0.3)
    axis.legend()
    return save_figure(plt, figure, path)


def plot_policy_ratios(
    results: dict[str, dict[str, dict[str, Any]]], shown: list[str], fixed: list[str], path: Path
) -> Path:
    """Each policy's throughput per scenario, relative to the best fixed γ in hindsight."""
    plt = pyplot()
    names = list(results)
    figure, axis = plt.subplots(figsize=(max(8, len(names) * 1.3), 4.5))
    shown = [p for p in shown if all(p in results[name] for name in names)]
    width = 0.8 / len(shown)
    for index, policy in enumerate(shown):
        values = []
        for name in names:
            best = max(results[name][p]["throughput_tok_s"] for p in fixed if p in results[name])
            values.append(results[name][policy]["throughput_tok_s"] / best)
        axis.bar([i + index * width for i in range(len(names))], values, width, label=policy)
    axis.axhline(1.0, color="k", lw=0.8)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
    axis.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("throughput / best fixed γ")
    axis.legend(fontsize=7, ncol=4)
    axis.set_title("window policies")
    return save_figure(plt, figure, path)


def plot_gains(validation: dict[str, dict[str, float]], path: Path) -> Path:
    """Predicted (simulator) and measured (emulator) gains of AWC, side by side."""
    plt = pyplot()
    names = list(validation)
    figure, axes = plt.subplots(1, 2, figsize=(max(8, len(names) * 2.4), 4), sharey=True)
    for axis, baseline in zip(axes, ("best_fixed", "heuristic"), strict=True):
        for offset, world in ((0.0, "predicted"), (0.4, "measured")):
            values = [validation[name][f"{world}_gain_vs_{baseline}_pct"] for name in names]
            axis.bar([i + offset for i in range(len(names))], values, 0.4, label=world)
        axis.axhline(0.0, color="k", lw=0.8)
        axis.set_xticks([i + 0.2 for i in range(len(names))])
        axis.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        axis.set_title(f"AWC vs {baseline.replace('_', ' ')}")
    axes[0].set_ylabel("throughput gain %")
    axes[0].legend(fontsize=8)
    return save_figure(plt, figure, path)


def plot_cdf_grid(samples: dict[str, dict[str, list[float]]], xlabel: str, path: Path) -> Path:
    """One panel per case: the empirical CDF of a quantity in each world, overlaid."""
    plt = pyplot()
    columns = min(4, max(1, len(samples)))
    rows = -(-len(samples) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.8 * rows), squeeze=False)
    for axis in axes.flat[len(samples) :]:
        axis.set_visible(False)
    for axis, (name, worlds) in zip(axes.flat, samples.items(), strict=False):
        for world, values in worlds.items():
            data = np.sort(values)
            if data.size:
                axis.step(
                    data,
                    np.arange(1, data.size + 1) / data.size,
                    where="post",
                    ls="-" if world == "emulated" else "--",
                    label=world,
                )
        axis.set_title(name, fontsize=8)
        axis.set_xlabel(xlabel, fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=7)
    return save_figure(plt, figure, path)


def plot_error_heatmap(
    errors: dict[str, dict[str, float | None]], path: Path, limit: float = 0.2
) -> Path:
    """Cases x metrics, coloured by the simulator's relative error (clipped at ±``limit``)
    and labelled with it; blank where a metric has no value."""
    plt = pyplot()
    cases = list(errors)
    metrics = list(next(iter(errors.values()), {}))
    grid = np.array(
        [[np.nan if errors[c][m] is None else errors[c][m] for m in metrics] for c in cases],
        dtype=float,
    ).reshape(len(cases), len(metrics))
    figure, axis = plt.subplots(figsize=(1.2 * len(metrics) + 3, 0.4 * len(cases) + 1.8))
    image = axis.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for (row, column), value in np.ndenumerate(grid):
        if not np.isnan(value):
            axis.text(column, row, f"{value * 100:+.0f}%", ha="center", va="center", fontsize=7)
    axis.set_xticks(range(len(metrics)))
    axis.set_xticklabels(metrics, rotation=30, ha="right", fontsize=8)
    axis.set_yticks(range(len(cases)))
    axis.set_yticklabels(cases, fontsize=8)
    figure.colorbar(image, label="(simulated - emulated) / emulated")
    axis.set_title("simulator error per case and metric")
    return save_figure(plt, figure, path)


def plot_capacity(points: list[dict[str, Any]], measure: str, ylabel: str, path: Path) -> Path:
    """One measure against the edge count per mode: the simulator's points as lines, the
    emulator's as markers (their own simulations as hollow markers beside them)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    modes = sorted({p["mode"] for p in points})
    colours = dict(zip(modes, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for mode in modes:
        sim = sorted(
            (p for p in points if p["mode"] == mode and p["world"] == "sim"),
            key=lambda p: p["edges"],
        )
        emu = [p for p in points if p["mode"] == mode and p["world"] == "emu"]
        if sim:
            axis.plot(
                [p["edges"] for p in sim],
                [p[measure] for p in sim],
                "-",
                lw=1.5,
                color=colours[mode],
                label=f"{mode} (simulated)",
            )
        if emu:
            axis.plot(
                [p["edges"] for p in emu],
                [p[measure] for p in emu],
                "o",
                color=colours[mode],
                label=f"{mode} (emulated)",
            )
            axis.plot(
                [p["edges"] for p in emu],
                [p["sim"].get(measure) for p in emu],
                "o",
                mfc="none",
                color=colours[mode],
            )
    axis.set_xscale("log", base=2)
    axis.set_xlabel("edges")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(f"{ylabel} against edges sharing one target")
    return save_figure(plt, figure, path)
