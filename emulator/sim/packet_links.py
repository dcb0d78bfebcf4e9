"""One link direction followed packet by packet, through the same ``Pipe`` the delay line
runs: for links whose queue discipline (drop-head, CoDel, PIE, byte limits), Mahimahi
stages (``mm-delay`` / ``mm-loss`` around ``mm-link``), delivery opportunities or ``once``
the analytic ``SimLink`` does not model.

A message is cut into the packets TCP would send (MSS-sized, each with its headers) and
enters the pipe at once; it leaves when its last packet does. A packet the pipe drops is
sent again after the retransmission timeout ``SimLink`` uses (TCP resends only what was
lost). The trace's rate, delay, jitter and loss are applied at its breakpoints in simulated
time, as the replay applies them on the delay line; delivery opportunities start at time 0
(the traces' time zero in both worlds).
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable
from typing import Any

from emulator.link.mahimahi_log import MahimahiLog
from emulator.link.pipe import INF, Packet
from emulator.link.queues import FRAME_HEADER
from emulator.scenario import LinkSpec
from emulator.sim.engine import Engine
from emulator.sim.links import (
    MAX_ATTEMPTS,
    MSS_BYTES,
    PACKET_OVERHEAD_BYTES,
    LinkSchedule,
    retransmit_wait_ms,
    wire_bytes,
)

Exit = Callable[[float], None]


def packet_sizes(payload: int) -> list[int]:
    """The IP sizes of the packets one ZeroMQ message of ``payload`` bytes takes (its
    frames less their Ethernet headers)."""
    wire, packets = wire_bytes(payload)
    data = wire - packets * PACKET_OVERHEAD_BYTES
    header = PACKET_OVERHEAD_BYTES - FRAME_HEADER
    return [MSS_BYTES + header] * (packets - 1) + [data - MSS_BYTES * (packets - 1) + header]


class PacketLink:
    """``enter(payload, at, on_exit)``: ``on_exit(t)`` runs when the message is through."""

    shared = True  # entered by an event at the moment a message reaches it
    per_packet = True

    def __init__(
        self,
        engine: Engine,
        spec: LinkSpec,
        direction: str,
        schedule: LinkSchedule,
        rng: random.Random,
        log: MahimahiLog | None = None,
    ) -> None:
        self.engine = engine
        self.rng = rng
        self.schedule = schedule
        self.once = spec.once
        self.pipe = spec.layout(direction).build(random.Random(rng.random()), log)
        self.log = log
        self._cycle = 0  # breakpoints: the next one is piece ``_piece`` of cycle ``_cycle``
        self._piece = 0
        self._apply_due(0.0)
        deliveries = spec.trace.deliveries_ms.get(direction)
        if spec.packet_exact and deliveries is not None:
            self.pipe.use_deliveries(deliveries, 0.0)
        self._messages: dict[int, list[Any]] = {}  # id -> [packets left, on_exit, attempts]
        self._next_id = 0
        self._wake_at = INF
        self.counters: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.wire_bytes = 0

    def enter(self, payload: int, at: float, on_exit: Exit) -> None:
        self._catch_up(at)
        sizes = packet_sizes(payload)
        message = self._next_id
        self._next_id += 1
        self._messages[message] = [len(sizes), on_exit, 0]
        self.sent += 1
        self.wire_bytes += sum(sizes) + FRAME_HEADER * len(sizes)
        dropped: list[Packet] = []
        for size in sizes:
            self.pipe.send((at, size, message), dropped)
        self._handle([], dropped, at)
        self._wake()

    def _breakpoint(self) -> float:
        """When the trace next changes (INF: a trace played once, past its end)."""
        if self.once and self._cycle > 0:
            return INF if self._piece > 0 else self.schedule.period_ms
        return self._cycle * self.schedule.period_ms + self.schedule.starts_ms[self._piece]

    def _apply_due(self, t: float) -> None:
        """Apply every breakpoint at or before ``t``, each after the pipe ran up to it."""
        while (due := self._breakpoint()) <= t:
            released, dropped = self.pipe.advance(due)
            self._handle(released, dropped, due)
            ended = self.once and self._cycle > 0
            piece = len(self.schedule.pieces) - 1 if ended else self._piece
            rate, delay, jitter, loss = self.schedule.pieces[piece]
            self.pipe.set_trace_values(0.0 if ended else rate, delay, jitter, loss * 100.0, due)
            self._piece += 1
            if ended:
                self._cycle, self._piece = 1, 1  # nothing follows the end
            elif self._piece == len(self.schedule.pieces):
                self._cycle, self._piece = self._cycle + 1, 0

    def _catch_up(self, t: float) -> None:
        self._apply_due(t)
        released, dropped = self.pipe.advance(t)
        self._handle(released, dropped, t)

    def _handle(self, released: list[Packet], dropped: list[Packet], now: float) -> None:
        for exit_time, _, message in released:
            state = self._messages[message]
            state[0] -= 1
            if state[0] == 0:
                del self._messages[message]
                state[1](exit_time)
        for arrival, size, message in dropped:
            state = self._messages[message]
            state[2] += 1
            self.counters["dropped_packets"] += 1
            if state[2] >= MAX_ATTEMPTS:
                self.counters["gave_up"] += 1
                continue
            wait = retransmit_wait_ms(self._delay_ms(), state[2] - 1, self.rng)
            self.engine.at(max(now, arrival) + wait, self._resend, (size, message))

    def _delay_ms(self) -> float:
        """The trace's one-way delay now, for the retransmission timer's RTT."""
        piece = (self._piece - 1) % len(self.schedule.pieces)
        return self.schedule.pieces[piece][1]

    def _resend(self, item: tuple[int, int]) -> None:
        now = self.engine.now
        self._catch_up(now)
        dropped: list[Packet] = []
        self.pipe.send((now, item[0], item[1]), dropped)
        self._handle([], dropped, now)
        self._wake()

    def _wake(self) -> None:
        """Make sure an event runs when the pipe or the trace next has something to do."""
        upcoming = self.pipe.next_event()
        if self._messages:
            upcoming = min(upcoming, self._breakpoint())
        if upcoming < self._wake_at and not math.isinf(upcoming):
            self._wake_at = upcoming
            self.engine.at(upcoming, self._on_wake)

    def _on_wake(self, _: Any = None) -> None:
        now = self.engine.now
        if now >= self._wake_at:
            self._wake_at = INF
        self._catch_up(now)
        self._wake()
