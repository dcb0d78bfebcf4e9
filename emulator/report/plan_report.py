"""What the capacity planner shows a person: ``plan.md`` (one page: how many edge devices
this cloud serves, with which mode, on which networks) and goodput and TPOT against edges,
one panel per network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.report.plots import pyplot, save_figure

MEASURES = {
    "goodput_tok_s": "goodput (tok/s within the SLOs)",
    "tpot_p50_ms": "TPOT p50 (ms)",
}


def plot_plan(document: dict[str, Any], measure: str, path: Path) -> Path:
    """``measure`` against edges, a line per mode, a panel per network."""
    plt = pyplot()
    networks = list(document["networks"])
    columns = min(3, len(networks))
    rows = -(-len(networks) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False, sharex=True, sharey=True
    )
    for axis, network in zip(axes.flat, networks, strict=False):
        for mode, result in document["networks"][network]["modes"].items():
            points = result["points"]
            axis.plot(
                [p["edges"] for p in points], [p[measure] for p in points], "o-", ms=3, label=mode
            )
        if measure == "tpot_p50_ms":
            axis.axhline(document["slo"]["tpot_ms"], color="grey", ls="--", lw=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
        axis.set_title(network, fontsize=9)
        axis.set_xlabel("edges")
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(networks) :]:
        axis.set_visible(False)
    axes[0][0].set_ylabel(MEASURES[measure])
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{MEASURES[measure]} against edges: {Path(document['scenario']).name}")
    return save_figure(plt, figure, path)


def best_mode(modes: dict[str, Any]) -> tuple[str | None, int | None]:
    """The mode that serves the most edges within the SLOs (ties: the most goodput there);
    (None, None) where none kept its requests within them at any count swept."""

    def key(item: tuple[str, Any]) -> tuple[int, float]:
        result = item[1]
        at = [p for p in result["points"] if p["edges"] == result["capacity_edges"]]
        return result["capacity_edges"] or 0, (at[0]["goodput_tok_s"] or 0.0) if at else 0.0

    name, result = max(modes.items(), key=key)
    if result["capacity_edges"] is None:
        return None, None
    return name, result["capacity_edges"]


def plan_markdown(document: dict[str, Any], notes: list[str]) -> str:
    slo = document["slo"]
    lines = [
        f"# Capacity plan: {Path(document['scenario']).name}",
        "",
        f"How many edge devices this cloud serves with at least {document['slo_share']:.0%} "
        f"of their requests within TTFT <= {slo['ttft_ms']:g} ms and TPOT <= "
        f"{slo['tpot_ms']:g} ms, per mode and network (simulated; edges swept "
        f"{document['edge_counts'][0]}..{document['edge_counts'][-1]}, best fixed γ of "
        f"{document['gammas']}).",
        "",
        "| network | best mode | its capacity (edges) | DSD overtakes cloud-only from | "
        + " | ".join(_modes(document))
        + " |",
        "|---" * (4 + len(_modes(document))) + "|",
    ]
    for network, result in document["networks"].items():
        mode, capacity = best_mode(result["modes"])
        crossover = result["crossover_edges"]
        cells = [_capacity(result["modes"].get(name)) for name in _modes(document)]
        lines.append(
            f"| {network} | {mode or 'none within the SLOs'} | {capacity or '-'} | "
            f"{crossover if crossover else 'never (in the counts swept)'} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "A mode's capacity is the most edges swept at which it kept the share above within "
        "the SLOs; `>N` means it still did at the largest count swept. A mode stops being "
        "swept on a network after two counts in a row outside the SLOs with its goodput "
        "not rising (`stopped after` in plan.json).",
        "",
        "![goodput](goodput.png)",
        "",
        "![TPOT](tpot.png)",
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in notes],
        "",
        f"Simulated in {document['wall_s']:.0f} s of wall time.",
    ]
    return "\n".join(lines) + "\n"


def _modes(document: dict[str, Any]) -> list[str]:
    return sorted({m for result in document["networks"].values() for m in result["modes"]})


def _capacity(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    capacity = result["capacity_edges"]
    if capacity is None:
        return "none"
    if capacity == result["swept_to"] and result["stopped_after"] is None:
        return f">{capacity}" if capacity else "none"
    return str(capacity)
