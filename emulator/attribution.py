"""Where a round's time goes, in either world: the breakdown that says which part of the
simulator's model is wrong when an end-to-end error is large.

Every ``round`` record carries the edge's send and receive times, the server's receive and
send times, its queue wait and verify time, and the draft time, so a round splits into
draft, uplink (network, and the wait until the server's loop drains the message), queue,
verify, server (the rest of the server's handling) and downlink. Both worlds' clocks are
one clock: the emulator's hosts share the kernel's, the simulator has its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator.fidelity import relative_error

COMPONENTS = ("draft", "uplink", "queue", "verify", "server", "downlink")


def round_components(record: dict[str, Any]) -> dict[str, float] | None:
    """One round's time per component (ms); None for a round without server times."""
    if record.get("t_send") is None or record.get("server_t_recv") is None:
        return None
    in_server = (record["server_t_send"] - record["server_t_recv"]) * 1000.0
    return {
        "draft": record["draft_ms"],
        "uplink": (record["server_t_recv"] - record["t_send"]) * 1000.0,
        "queue": record["queue_ms"],
        "verify": record["verify_ms"],
        "server": in_server - record["queue_ms"] - record["verify_ms"],
        "downlink": (record["t_recv"] - record["server_t_send"]) * 1000.0,
    }


def breakdown(events: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median and mean of each component over a run's rounds (empty without rounds)."""
    rounds = [c for e in events if e["event"] == "round" and (c := round_components(e))]
    if not rounds:
        return {}
    return {
        name: {
            "p50_ms": float(np.median([r[name] for r in rounds])),
            "mean_ms": float(np.mean([r[name] for r in rounds])),
        }
        for name in COMPONENTS
    }


def compare_breakdowns(
    emu_events: list[dict[str, Any]], sim_events: list[dict[str, Any]]
) -> dict[str, dict[str, float | None]]:
    """Per component: the emulated and simulated mean and the simulator's relative error,
    and its share of the difference in the mean round time."""
    emu, sim = breakdown(emu_events), breakdown(sim_events)
    if not emu or not sim:
        return {}
    total = sum(sim[n]["mean_ms"] - emu[n]["mean_ms"] for n in COMPONENTS)
    return {
        name: {
            "emu_ms": emu[name]["mean_ms"],
            "sim_ms": sim[name]["mean_ms"],
            "error": relative_error(emu[name]["mean_ms"], sim[name]["mean_ms"]),
            "difference_ms": sim[name]["mean_ms"] - emu[name]["mean_ms"],
            "share": (sim[name]["mean_ms"] - emu[name]["mean_ms"]) / total if total else None,
        }
        for name in COMPONENTS
    }


def format_breakdown(compared: dict[str, dict[str, float | None]]) -> str:
    """A table: per component, the mean ms in both worlds, the error and its share of the
    difference in round time."""
    header = f"{'component':<11}{'emulated':>10}{'simulated':>11}{'error':>9}{'share':>8}"
    lines = [header, "-" * len(header)]
    for name, row in compared.items():
        error, share = row["error"], row["share"]
        lines.append(
            f"{name:<11}{row['emu_ms']:>10.1f}{row['sim_ms']:>11.1f}"
            f"{'-' if error is None else f'{error * 100:+.1f}%':>9}"
            f"{'-' if share is None else f'{share * 100:.0f}%':>8}"
        )
    return "\n".join(lines)
