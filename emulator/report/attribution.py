"""Where a round's time, and the first token's, go in either world: the breakdown that says
which part of the simulator's model is wrong when an end-to-end error is large.

Every ``round`` record carries the edge's send and receive times, the server's receive and
send times, its queue wait and verify time, and the draft time, so a round splits into
draft, uplink (network, and the wait until the server's loop drains the message), queue,
verify, server (the rest of the server's handling) and downlink. Every ``request`` record
carries the same for its ``open``, so its TTFT splits into uplink, the target's prefill,
server (the rest) and downlink — which includes waiting for the draft's own prefill when
that ends later; the draft's prefill itself overlaps the rest and is shown beside them.
Both worlds' clocks are one clock: the emulator's hosts share the kernel's, the simulator
has its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from emulator.report.fidelity import relative_error
from runtime.rounds import RoundRecord

COMPONENTS = ("draft", "uplink", "queue", "verify", "server", "downlink")
FIRST_TOKEN_COMPONENTS = ("uplink", "prefill", "server", "downlink")
OVERLAPPING = ("draft_prefill",)  # runs beside the first token's path, not within it
Components = Callable[[dict[str, Any]], dict[str, float] | None]


def round_components(event: dict[str, Any]) -> dict[str, float] | None:
    """One round's time per component (ms); None for a round without server times (a
    streaming session's)."""
    r = RoundRecord.of_event(event)
    if r.t_send is None or r.server_t_recv is None:
        return None
    in_server = (r.server_t_send - r.server_t_recv) * 1000.0
    return {
        "draft": r.draft_ms,
        "uplink": (r.server_t_recv - r.t_send) * 1000.0,
        "queue": r.queue_ms,
        "verify": r.verify_ms,
        "server": in_server - r.queue_ms - r.verify_ms,
        "downlink": (r.t_recv - r.server_t_send) * 1000.0,
    }


def first_token_components(record: dict[str, Any]) -> dict[str, float] | None:
    """One request's TTFT per component (ms), and the draft's prefill beside it; None for a
    request without its open's times (a failed one, or a log from before they were kept)."""
    if record.get("open_server_t_recv") is None or record.get("t_first_token") is None:
        return None
    in_server = (record["open_server_t_send"] - record["open_server_t_recv"]) * 1000.0
    return {
        "uplink": (record["open_server_t_recv"] - record["t_open_sent"]) * 1000.0,
        "prefill": record["target_prefill_ms"],
        "server": in_server - record["target_prefill_ms"],
        "downlink": (record["t_first_token"] - record["open_server_t_send"]) * 1000.0,
        "draft_prefill": record.get("draft_prefill_ms", 0.0),
    }


BREAKDOWNS: dict[str, tuple[str, Components, tuple[str, ...]]] = {
    "round": ("round", round_components, COMPONENTS),
    "first_token": ("request", first_token_components, FIRST_TOKEN_COMPONENTS + OVERLAPPING),
}


def breakdown(events: list[dict[str, Any]], of: str = "round") -> dict[str, dict[str, float]]:
    """Median and mean of each component over a run's rounds (``of="round"``) or requests'
    first tokens (``"first_token"``); empty where there are none."""
    kind, components, names = BREAKDOWNS[of]
    parts = [c for e in events if e["event"] == kind and (c := components(e))]
    if not parts:
        return {}
    return {
        name: {
            "p50_ms": float(np.median([p[name] for p in parts])),
            "mean_ms": float(np.mean([p[name] for p in parts])),
        }
        for name in names
    }


def compare_breakdowns(
    emu_events: list[dict[str, Any]], sim_events: list[dict[str, Any]], of: str = "round"
) -> dict[str, dict[str, float | None]]:
    """Per component: the emulated and simulated mean and the simulator's relative error,
    and its share of the difference in the mean round time (or TTFT); an overlapping
    component has no share."""
    emu, sim = breakdown(emu_events, of), breakdown(sim_events, of)
    if not emu or not sim:
        return {}
    additive = [name for name in emu if name not in OVERLAPPING]
    total = sum(sim[n]["mean_ms"] - emu[n]["mean_ms"] for n in additive)
    return {
        name: {
            "emu_ms": emu[name]["mean_ms"],
            "sim_ms": sim[name]["mean_ms"],
            "error": relative_error(emu[name]["mean_ms"], sim[name]["mean_ms"]),
            "difference_ms": sim[name]["mean_ms"] - emu[name]["mean_ms"],
            "share": (sim[name]["mean_ms"] - emu[name]["mean_ms"]) / total
            if total and name in additive
            else None,
        }
        for name in emu
    }


def format_breakdown(compared: dict[str, dict[str, float | None]]) -> str:
    """A table: per component, the mean ms in both worlds, the error and its share of the
    difference in round time."""
    header = f"{'component':<14}{'emulated':>10}{'simulated':>11}{'error':>9}{'share':>8}"
    lines = [header, "-" * len(header)]
    for name, row in compared.items():
        error, share = row["error"], row["share"]
        lines.append(
            f"{name:<14}{row['emu_ms']:>10.1f}{row['sim_ms']:>11.1f}"
            f"{'-' if error is None else f'{error * 100:+.1f}%':>9}"
            f"{'-' if share is None else f'{share * 100:.0f}%':>8}"
        )
    return "\n".join(lines)
