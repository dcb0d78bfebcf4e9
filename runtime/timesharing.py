"""Time-sharing: how much more CPU time a draft takes while other drafters share its CPU.

The emulator pins several edges to one core, where the kernel runs them in turns of a few
milliseconds. Each turn starts with caches the others filled, so each one's CPU time per
round grows with how many take turns (measured on the development machine: x1.12 beside one
other drafter, x1.23 beside two). The simulator shares a core's time among the hosts
computing on it (``emulator.sim.cpu.SharedCore``); these ratios price the rest. Measured as
cross-core interference is (``runtime.interference``): a draft round timed alone and beside
one, then two, neighbours doing draft work on the same CPU, paused and resumed in turn. The
effect is about as large as the machine's drift between two timings a second apart, so it
takes many short alternations (one timing of a round each, where cross-core interference
takes the median of three) rather than a few long ones, after one that is not counted (the
neighbours' first turns ran slow in two measurements here).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from runtime.interference import Neighbour, ratio_record
from runtime.models import LoadedModel
from runtime.profile import PROBE, draft_round_cpu_ms

SHARERS = (2, 3)  # drafters taking turns on the CPU, the measured one included
ALTERNATIONS = 15  # one timing each: resolved where 12 or more fall on one side of 1


def measure_time_sharing(
    draft: LoadedModel,
    specs: tuple[str, str],
    cpu: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Per count of drafters on ``cpu`` (``SHARERS``), a draft round's CPU time there over
    its CPU time alone (``ALTERNATIONS`` alternations after one not counted;
    ``interference.ratio_record``), with this process pinned to ``cpu`` too.
    ``progress(done, total)`` after each alternation."""
    os.sched_setaffinity(0, {cpu})
    neighbours: list[Neighbour] = []
    try:
        for _ in range(max(SHARERS) - 1):
            neighbours.append(Neighbour("draft", *specs, cpu))
        alone: list[float] = []
        beside: dict[int, list[float]] = {sharers: [] for sharers in SHARERS}
        for done in range(ALTERNATIONS + 1):
            for neighbour in neighbours:
                neighbour.pause()
            timings = [draft_round_cpu_ms(draft, PROBE["context"], 1)]
            for sharers in SHARERS:
                for neighbour in neighbours[: sharers - 1]:
                    neighbour.resume()
                timings.append(draft_round_cpu_ms(draft, PROBE["context"], 1))
            if done:
                alone.append(timings[0])
                for sharers, ms in zip(SHARERS, timings[1:], strict=True):
                    beside[sharers].append(ms)
                progress(done, ALTERNATIONS)
    finally:
        for neighbour in neighbours:
            neighbour.stop()
    return {
        "cpu": cpu,
        "alternations": ALTERNATIONS,
        "op": "a draft round",
        "sharers": {str(n): ratio_record(alone, beside[n]) for n in SHARERS},
    }
