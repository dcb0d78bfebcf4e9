"""Summary statistics (time-weighted) and a plot of a ``LinkTrace``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from emulator.traces.linktrace import LinkTrace


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float | None:
    """The q-th percentile of a piecewise-constant series, each value weighted by its duration."""
    known = ~np.isnan(values)
    if not known.any():
        return None
    order = np.argsort(values[known], kind="stable")
    sorted_values, sorted_weights = values[known][order], weights[known][order]
    cumulative = np.cumsum(sorted_weights)
    index = int(np.searchsorted(cumulative, q / 100.0 * cumulative[-1], side="left"))
    return float(sorted_values[min(index, len(sorted_values) - 1)])


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float | None:
    known = ~np.isnan(values)
    if not known.any() or weights[known].sum() == 0:
        return None
    return float((values[known] * weights[known]).sum() / weights[known].sum())


def summarise_trace(trace: LinkTrace) -> dict[str, Any]:
    """Means and percentiles per direction, RTT, and outage time (rate 0 or 100% loss)."""
    widths = trace.widths()
    out: dict[str, Any] = {"duration_s": float(trace.duration_s), "pieces": trace.pieces}
    for name in ("up", "down"):
        rate = getattr(trace, name)["rate_mbps"]
        out[f"{name}_mbps_mean"] = weighted_mean(rate, widths)
        for q in (5, 50, 95):
            out[f"{name}_mbps_p{q}"] = weighted_percentile(rate, widths, q)
        out[f"{name}_loss_pct_mean"] = weighted_mean(getattr(trace, name)["loss_pct"], widths)
    rtt = trace.rtt_ms()
    out["rtt_ms_mean"] = weighted_mean(rtt, widths)
    for q in (5, 50, 95):
        out[f"rtt_ms_p{q}"] = weighted_percentile(rtt, widths, q)
    jitter = trace.up["jitter_ms"] + trace.down["jitter_ms"]
    out["rtt_jitter_ms_mean"] = weighted_mean(jitter, widths)
    down = np.zeros(trace.pieces, dtype=bool)
    for name in ("up", "down"):
        series = getattr(trace, name)
        down |= (series["rate_mbps"] == 0) | (series["loss_pct"] >= 100)
    out["outage_s"] = float(widths[down].sum())
    out["meta"] = dict(trace.meta)
    return out


def plot_trace(trace: LinkTrace, path: str | Path, title: str | None = None) -> None:
    """Rate per direction and RTT over time, as step plots, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = np.append(trace.times, trace.duration_s)
    fig, (rate_ax, rtt_ax) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for name, colour in (("down", "tab:blue"), ("up", "tab:orange")):
        rate = getattr(trace, name)["rate_mbps"]
        if not np.isnan(rate).all():
            rate_ax.stairs(rate, times, label=f"{name}link", color=colour)
    rate_ax.set_ylabel("rate (Mbit/s)")
    rate_ax.legend(loc="upper right")
    rtt = trace.rtt_ms()
    if not np.isnan(rtt).all():
        rtt_ax.stairs(rtt, times, color="tab:green", label="RTT")
        jitter = trace.up["jitter_ms"] + trace.down["jitter_ms"]
        if not np.isnan(jitter).all():
            rtt_ax.stairs(
                rtt + jitter,
                times,
                baseline=rtt - jitter,
                fill=True,
                alpha=0.2,
                color="tab:green",
                label="± jitter",
            )
        rtt_ax.legend(loc="upper right")
    else:
        rtt_ax.text(0.5, 0.5, "no RTT in this trace", ha="center", transform=rtt_ax.transAxes)
    rtt_ax.set_ylabel("RTT (ms)")
    rtt_ax.set_xlabel("time (s)")
    heading = title or f"{trace.meta.get('source', '')}: {trace.meta.get('file', '')}"
    fig.suptitle(textwrap.fill(heading, 110), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
