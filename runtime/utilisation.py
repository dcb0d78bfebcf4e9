"""How busy the target has been lately: the share of a recent window it spent computing.

Verdicts carry it so that window policies can tell a saturated server (where a wider batch
slows every edge's round) from an idle one. The real server and the simulated one both
measure it with this class, in their own time units.
"""

from __future__ import annotations

import collections

BUSY_WINDOW_S = 5.0  # the recent past whose busy share verdicts report


class BusyMeter:
    """Busy spans of the last ``window`` time units, and their share of it."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.spans: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, start: float, end: float) -> None:
        self.spans.append((start, end))

    def share(self, now: float) -> float:
        horizon = now - self.window
        while self.spans and self.spans[0][1] <= horizon:
            self.spans.popleft()
        busy = sum(min(end, now) - max(start, horizon) for start, end in self.spans)
        return min(1.0, max(0.0, busy / self.window))
