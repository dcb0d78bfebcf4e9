"""The event loop: a binary heap of (time, sequence, action, argument) in simulated ms.

A plain heap rather than SimPy: every simulated round is a short chain of callbacks with no
blocking logic to express as a process, and the heap runs several times more events per
second (``scripts/bench_sim.py --compare-simpy`` measures both). Ties are broken by the
order of scheduling, so a run is a pure function of its inputs and seed.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

Action = Callable[[Any], None]


class Engine:
    """Runs scheduled actions in time order; ``now`` is the current simulated time (ms)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events = 0
        self._heap: list[tuple[float, int, Action, Any]] = []
        self._order = itertools.count()

    def at(self, time_ms: float, action: Action, argument: Any = None) -> None:
        """Run ``action(argument)`` at ``time_ms`` (never earlier than now)."""
        if time_ms < self.now:
            time_ms = self.now
        heapq.heappush(self._heap, (time_ms, next(self._order), action, argument))

    def run(self, until_ms: float = float("inf"), max_events: float = float("inf")) -> bool:
        """Process events until none are left, the next lies beyond ``until_ms``, or
        ``max_events`` have run; returns whether events remain before ``until_ms``."""
        heap = self._heap
        pop = heapq.heappop
        events = 0
        try:
            while heap and heap[0][0] <= until_ms and events < max_events:
                self.now, _, action, argument = pop(heap)
                events += 1
                action(argument)
        finally:
            self.events += events
        return bool(heap) and heap[0][0] <= until_ms
