"""Replay link traces on live shapers, on one clock, logging every change as it is applied.

Each link's trace is applied piece by piece at its breakpoints (looping when it ends); a
``packet_exact`` link replays its Mahimahi delivery opportunities instead of rates. The
changes go into the run's event log as ``link`` events (wall-clock ``t``, link, direction,
the values, and how late the change was), the same clock as the runtime's events, so a
report can show what the network actually was when each round crossed it.
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass

from emulator.net.shaping.base import DEFAULT_QUEUE_PACKETS, LinkShaper, ShapeParams
from emulator.traces.linktrace import DIRECTIONS, QUANTITIES, LinkTrace
from runtime.events import EventLog


@dataclass
class ReplayedLink:
    name: str
    shaper: LinkShaper
    trace: LinkTrace
    queue_packets: int = DEFAULT_QUEUE_PACKETS
    packet_exact: bool = False


class TraceReplayer:
    """Applies every link's trace on a shared clock, in a background thread."""

    def __init__(self, links: list[ReplayedLink], log: EventLog, loop: bool = True) -> None:
        self.links = links
        self.log = log
        self.loop = loop
        self.lateness_ms: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    def apply(self, link: ReplayedLink, piece: int, lateness_ms: float = 0.0) -> None:
        for direction in DIRECTIONS:
            series = getattr(link.trace, direction)
            values = (float(series[q][piece]) for q in QUANTITIES)
            params = ShapeParams.from_trace_values(*values, queue_packets=link.queue_packets)
            link.shaper.set(direction, params)
            self.log.write(
                "link",
                t=time.time(),
                link=link.name,
                direction=direction,
                piece=piece,
                lateness_ms=lateness_ms,
                **params.to_dict(),
            )

    def start(self) -> None:
        """Apply every link's first piece now, then follow the traces in the background."""
        self.started_at = time.monotonic()
        for link in self.links:
            if link.packet_exact:
                for direction, deliveries in link.trace.deliveries_ms.items():
                    link.shaper.set_deliveries(direction, deliveries)
                    self.log.write(
                        "link",
                        t=time.time(),
                        link=link.name,
                        direction=direction,
                        piece=0,
                        packet_exact=True,
                        opportunities=len(deliveries),
                    )
            self.apply(link, 0)
        self._thread = threading.Thread(target=self._run, name="trace-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TraceReplayer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self.started_at is not None
        schedule: list[tuple[float, int, int]] = []  # (due offset s, link index, piece)
        for index, link in enumerate(self.links):
            if link.trace.pieces > 1:
                heapq.heappush(schedule, (float(link.trace.times[1]), index, 1))
            elif self.loop:
                heapq.heappush(schedule, (link.trace.duration_s, index, 0))
        while schedule and not self._stop.is_set():
            due, index, piece = schedule[0]
            wait = self.started_at + due - time.monotonic()
            if wait > 0:
                self._stop.wait(min(wait, 0.5))
                continue
            heapq.heappop(schedule)
            link = self.links[index]
            lateness = -wait * 1000.0
            self.lateness_ms.append(lateness)
            self.apply(link, piece, lateness)
            trace, cycle = link.trace, due - float(link.trace.times[piece])
            following = piece + 1
            if following < trace.pieces:
                heapq.heappush(schedule, (cycle + float(trace.times[following]), index, following))
            elif self.loop:
                heapq.heappush(schedule, (cycle + trace.duration_s, index, 0))
