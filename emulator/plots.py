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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    tpots: dict[str, list[float]] = defaultdict(list)
    start = min((e["t_arrival"] for e in events if e.get("event") == "request"), default=0.0)
    for event in events:
        if event.get("event") == "round" and event.get("t_send") is not None:
            rounds[event["edge"]].append(event)
        elif event.get("event") == "request" and (tpot := _tpot_ms(event)) is not None:
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
        times = [r["t_recv"] - start for r in data]
        rtt.plot(times, [(r["t_recv"] - r["t_send"]) * 1000.0 for r in data], ".", ms=3, label=edge)
        window.plot(times, [r["gamma"] for r in data], ".", ms=3, label=edge)
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
