"""Time-sharing: how much more CPU time a role's op takes while other processes of the
same role take turns on its CPU.

The emulator pins several edges to one core, and may pin several target replicas to one
core, where the kernel runs them in turns of a few milliseconds. Each turn starts with
caches the others filled, so each one's CPU time per op grows with how many take turns
(measured on the development machine: a draft round x1.12 beside one other drafter, x1.23
beside two; a verification x1.13 beside another replica). The simulator shares a core's
time among the hosts computing on it (``emulator.sim.cpu.SharedCore``); these ratios price
the rest. Measured as cross-core interference is (``runtime.interference``): the op timed
alone and beside one, then two, neighbours doing the same role's work on the same CPU,
paused and resumed in turn. The effect is about as large as the machine's drift between
two timings a second apart, so it takes many short alternations (one timing of the op each,
where cross-core interference takes the median of three) rather than a few long ones, after
one that is not counted (the neighbours' first turns ran slow in two measurements here).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from runtime.interference import Neighbour, ratio_record
from runtime.models import LoadedModel
from runtime.profile import PROBE, draft_round_cpu_ms, verify_cpu_ms

# processes of the role taking turns on the CPU, the measured one included: an emulation
# puts many edges on a core, and two replicas at most (the emulator runs two targets)
SHARERS = {"draft": (2, 3), "target": (2,)}
ALTERNATIONS = 15  # one timing each: resolved where 12 or more fall on one side of 1
OPS = {"draft": "a draft round", "target": "a verification"}


def _op_ms(model: LoadedModel, role: str) -> float:
    """CPU time of the role's op at the probe's shape: a draft round, or a verification."""
    if role == "draft":
        return draft_round_cpu_ms(model, PROBE["context"], 1)
    return verify_cpu_ms(model, 1)


def measure_time_sharing(
    model: LoadedModel,
    role: str,
    specs: tuple[str, str],
    cpu: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Per count of ``role`` processes on ``cpu`` (``SHARERS``), the role's op's CPU time
    there over its CPU time alone (``ALTERNATIONS`` alternations after one not counted;
    ``interference.ratio_record``), with this process pinned to ``cpu`` too.
    ``progress(done, total)`` after each alternation."""
    os.sched_setaffinity(0, {cpu})
    counts = SHARERS[role]
    neighbours: list[Neighbour] = []
    try:
        for _ in range(max(counts) - 1):
            neighbours.append(Neighbour(role, *specs, cpu))
        alone: list[float] = []
        beside: dict[int, list[float]] = {sharers: [] for sharers in counts}
        for done in range(ALTERNATIONS + 1):
            for neighbour in neighbours:
                neighbour.pause()
            timings = [_op_ms(model, role)]
            for sharers in counts:
                for neighbour in neighbours[: sharers - 1]:
                    neighbour.resume()
                timings.append(_op_ms(model, role))
            if done:
                alone.append(timings[0])
                for sharers, ms in zip(counts, timings[1:], strict=True):
                    beside[sharers].append(ms)
                progress(done, ALTERNATIONS)
    finally:
        for neighbour in neighbours:
            neighbour.stop()
    return {
        "cpu": cpu,
        "alternations": ALTERNATIONS,
        "op": OPS[role],
        "sharers": {str(n): ratio_record(alone, beside[n]) for n in counts},
    }
