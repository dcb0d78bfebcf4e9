"""Packet logs in Mahimahi's format (``mm-link --uplink-log``), for Mahimahi's own tools.

Header lines start with ``#``: the link, the command line, the queue, the init timestamp
(wall clock, ms) and the base timestamp (when the link's schedule started, ms on the log's
clock). Then one event per line, in whole ms on that clock:

    T + BYTES            a packet arrived at the queue
    T # 1504             a delivery opportunity (capacity)
    T - BYTES DELAY      a packet left the link after DELAY ms in it
    T d PACKETS BYTES    packets dropped by the queue

Under a rate instead of a schedule, an opportunity line is written each time the rate has
offered another 1504 bytes, so that the capacity curve of ``mm-throughput-graph`` holds.
Mahimahi logs only the drops made as a packet arrives; this log also has those a queue
makes as it sends (CoDel's). Note: ``mm-throughput-graph`` stops at a ``d`` line (in
Mahimahi's own logs too); ``grep -v ' d '`` first for it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TextIO

from emulator.link.queues import PACKET_SIZE


class MahimahiLog:
    """Writes one direction's events; times given in ms on the caller's clock, logged as
    whole ms since ``zero_ms`` (the log's init)."""

    def __init__(
        self,
        path: str | Path,
        link_name: str,
        trace_name: str,
        queue_description: str,
        command_line: str,
        zero_ms: float,
        init_epoch_ms: int,
        base_ms: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.zero = zero_ms
        self.file: TextIO = open(self.path, "w", buffering=1 << 16)  # noqa: SIM115 (closed by close)
        self.file.write(
            f"# mahimahi mm-link ({link_name}) [{trace_name}] > {self.path.name}\n"
            f"# command line: {command_line}\n"
            f"# queue: {queue_description}\n"
            f"# init timestamp: {init_epoch_ms}\n"
            f"# base timestamp: {self._ms(zero_ms if base_ms is None else base_ms)}\n"
        )
        self.capacity_clock: float | None = None
        self.capacity_bytes = 0.0

    def _ms(self, t: float) -> int:
        return max(0, math.floor(t - self.zero))

    def arrival(self, t: float, size: int) -> None:
        self.file.write(f"{self._ms(t)} + {size}\n")

    def opportunity(self, t: float) -> None:
        self.file.write(f"{self._ms(t)} # {PACKET_SIZE}\n")

    def departure(self, t: float, size: int, arrived: float) -> None:
        departed = self._ms(t)
        self.file.write(f"{departed} - {size} {departed - self._ms(arrived)}\n")

    def drop(self, t: float, packets: int, size: int) -> None:
        self.file.write(f"{self._ms(t)} d {packets} {size}\n")

    def capacity(self, rate_mbps: float | None, until: float) -> None:
        """Opportunity lines for what a rate offered from the last call up to ``until``."""
        since, self.capacity_clock = self.capacity_clock, until
        if since is None or rate_mbps is None or rate_mbps <= 0 or until <= since:
            return
        bytes_per_ms = rate_mbps * 1000.0 / 8.0
        needed = PACKET_SIZE - self.capacity_bytes
        t = since + needed / bytes_per_ms
        while t <= until:
            self.opportunity(t)
            t += PACKET_SIZE / bytes_per_ms
        self.capacity_bytes = PACKET_SIZE - (t - until) * bytes_per_ms

    def close(self) -> None:
        self.file.close()
