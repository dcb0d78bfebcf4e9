"""Replay link traces on live shapers, on one clock, logging every change as it is applied.

Each link's directions are first built as its scenario says (stages, queue, Mahimahi-format
packet logs); then its trace is applied piece by piece at its breakpoints (looping when it
ends, or, for a link played ``once``, leaving it without capacity); a ``packet_exact`` link
replays its Mahimahi delivery opportunities instead of rates. The
changes go into the run's event log as ``link`` events (wall-clock ``t``, link, direction,
the values, and how late the change was), the same clock as the runtime's events, so a
report can show what the network actually was when each round crossed it.
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.net.shaping.base import LinkShaper, PacketLogRequest, ShapeParams
from emulator.scenario import LinkSpec
from emulator.traces.linktrace import DIRECTIONS, QUANTITIES, LinkTrace
from runtime.events import EventLog

LINK_NAMES = {"up": "Uplink", "down": "Downlink"}  # as mm-link names its directions


@dataclass
class ReplayedLink:
    name: str
    shaper: LinkShaper
    spec: LinkSpec

    @property
    def trace(self) -> LinkTrace:
        return self.spec.trace


class TraceReplayer:
    """Applies every link's trace on a shared clock, in a background thread; the packet
    logs links ask for go into ``packet_logs``."""

    def __init__(
        self,
        links: list[ReplayedLink],
        log: EventLog,
        loop: bool = True,
        packet_logs: Path | None = None,
    ) -> None:
        self.links = links
        self.log = log
        self.loop = loop
        self.packet_logs = packet_logs
        self.lateness_ms: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    def apply(
        self, link: ReplayedLink, piece: int, lateness_ms: float = 0.0, ended: bool = False
    ) -> None:
        """Set the trace's ``piece`` on both directions (``ended``: a link played once is
        past its end, and keeps the last piece's delay and loss with no capacity)."""
        for direction in DIRECTIONS:
            series = getattr(link.trace, direction)
            values = [float(series[q][piece]) for q in QUANTITIES]
            if ended:
                values[0] = 0.0
            params = ShapeParams.from_trace_values(*values, queue_packets=link.spec.queue_packets)
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
            for direction in DIRECTIONS:
                link.shaper.configure(
                    direction, link.spec.layout(direction), self._log_request(link, direction)
                )
            if link.spec.packet_exact:
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

    def _log_request(self, link: ReplayedLink, direction: str) -> PacketLogRequest | None:
        name = link.spec.logs.get(direction)
        if name is None:
            return None
        if self.packet_logs is None:
            raise ValueError(f"link {link.name} asks for packet logs, and this run keeps none")
        self.packet_logs.mkdir(parents=True, exist_ok=True)
        return PacketLogRequest(
            str(self.packet_logs / f"{link.name}-{Path(name).name}"),
            LINK_NAMES[direction],
            link.spec.trace_files.get(direction, link.trace.meta.get("file", "")),
            link.spec.command_line or link.spec.description,
        )

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
        # (due offset s, link index, piece; -1: a link played once is past its end)
        schedule: list[tuple[float, int, int]] = []
        for index, link in enumerate(self.links):
            if link.trace.pieces > 1:
                heapq.heappush(schedule, (float(link.trace.times[1]), index, 1))
            else:
                self._after_last(schedule, index, 0.0)
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
            if piece < 0:
                self.apply(link, link.trace.pieces - 1, lateness, ended=True)
                continue
            self.apply(link, piece, lateness)
            trace, cycle = link.trace, due - float(link.trace.times[piece])
            following = piece + 1
            if following < trace.pieces:
                heapq.heappush(schedule, (cycle + float(trace.times[following]), index, following))
            else:
                self._after_last(schedule, index, cycle)

    def _after_last(self, schedule: list[tuple[float, int, int]], index: int, cycle: float) -> None:
        """What follows a trace's last piece: its first again, or its end (``once``)."""
        link = self.links[index]
        if link.spec.once:
            heapq.heappush(schedule, (cycle + link.trace.duration_s, index, -1))
        elif self.loop:
            heapq.heappush(schedule, (cycle + link.trace.duration_s, index, 0))
