"""One direction of a link, as the emulator's shaper treats it, in simulated time.

Per message: loss (a lost message is sent again after a retransmission timeout), a
drop-tail queue of ``queue_packets``, FIFO serialisation at the rate in force when the
message reaches the head (an outage holds it until the rate returns), then the one-way
delay with Gaussian jitter, never overtaking an earlier message delayed under the same
setting. Rate, delay, jitter and loss follow the scenario's ``LinkTrace``, looped as the
emulator's replay loops it; NaN (unspecified) means unlimited rate, zero delay, no loss.

A message's exit time is computed when it enters a link, which is exact as long as
messages enter each link in time order. That holds for the first link a sender feeds (in
the order it sends); a shared link further along a path (the WAN uplink, fed by every
edge), and whatever follows it, is entered by an event at the moment the message reaches
it. A path delivers in the order it was sent, as the TCP connection it stands for does.
One simplification: a lost message's retransmission is placed on the link when the loss
happens, so on a lossy shared link a message sent during the timeout may queue behind it.
"""

from __future__ import annotations

import bisect
import collections
import functools
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from emulator.sim.engine import Engine
from emulator.traces.linktrace import LinkTrace

MSS_BYTES = 1448
PACKET_OVERHEAD_BYTES = 66  # Ethernet 14 + IPv4 20 + TCP with timestamps 32, per packet
MIN_RTO_MS = 200.0  # Linux's minimum retransmission timeout
MAX_RTO_MS = 120_000.0  # and its maximum
MAX_ATTEMPTS = 16  # after this many losses in a row a message is given up (TCP gives up too)

Deliver = Callable[[Any], None]
STRANDED = math.inf  # exit time of a message sent into a permanent outage


@functools.cache
def wire_bytes(payload: int) -> tuple[int, int]:
    """(bytes on the wire, packets) of one ZeroMQ message of ``payload`` bytes over TCP."""
    framed = payload + (2 if payload < 256 else 9)  # ZMTP short / long frame header
    packets = max(1, math.ceil(framed / MSS_BYTES))
    return framed + packets * PACKET_OVERHEAD_BYTES, packets


def retransmit_wait_ms(delay_ms: float, attempt: int, rng: random.Random) -> float:
    """Linux's wait before resending a lone lost segment (loss probe for one packet in
    flight: 1.5 RTT + 200 ms, doubling on each further loss up to 120 s); RTT taken as
    2 x delay. Each connection's timer also carries its own RTT variance: up to 25 % more,
    drawn at random, so that senders that lost together do not retry in lockstep."""
    wait = (3.0 * delay_ms + MIN_RTO_MS) * (2**attempt) * (1.0 + 0.25 * rng.random())
    return min(wait, MAX_RTO_MS)


class LinkSchedule:
    """One direction of a trace as plain lists, built once and shared by every link that
    replays the same trace (thousands of simulated edges may share one file)."""

    def __init__(self, trace: LinkTrace, direction: str) -> None:
        series = trace.up if direction == "up" else trace.down
        self.period_ms = trace.duration_s * 1000.0
        self.starts_ms = (trace.times * 1000.0).tolist()
        rates = series["rate_mbps"]
        self.rate_kbit_per_ms = [  # Mbit/s == kbit/ms; None: unlimited
            None if math.isnan(r) else r for r in rates.tolist()
        ]
        delays = np.nan_to_num(series["delay_ms"], nan=0.0).tolist()
        jitters = np.nan_to_num(series["jitter_ms"], nan=0.0).tolist()
        losses = np.clip(np.nan_to_num(series["loss_pct"], nan=0.0) / 100.0, 0, 1).tolist()
        self.pieces = list(zip(self.rate_kbit_per_ms, delays, jitters, losses, strict=True))


class SimLink:
    """One direction of one link: ``transit`` says when a message entering it comes out.

    ``shared``: fed by many senders (the WAN), so its drop-tail queue is tracked; an access
    link carries one message at a time each way, so its queue never fills.
    """

    per_packet = False  # ``emulator.sim.packet_links.PacketLink`` is followed per packet

    def __init__(
        self,
        schedule: LinkSchedule,
        queue_packets: int,
        rng: random.Random,
        shared: bool = False,
    ) -> None:
        self.shared = shared
        self.rng = rng
        self.queue_packets = queue_packets
        self.period_ms = schedule.period_ms
        self.starts_ms = schedule.starts_ms
        self.pieces = schedule.pieces  # (rate kbit/ms or None, delay, jitter, loss fraction)
        self.free_at = 0.0
        self.last_release = 0.0
        self.last_delay = math.nan
        self.in_queue: collections.deque[tuple[float, int]] = collections.deque()
        self.queued_packets = 0
        self.counters: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.wire_bytes = 0
        self._span_start = self._span_end = 0.0
        self._span_piece = 0

    def piece_at(self, time_ms: float) -> int:
        """The trace piece in force at ``time_ms``; the last answer's span is kept, since
        nearly every query falls into the same piece as the one before."""
        if self._span_start <= time_ms < self._span_end:
            return self._span_piece
        cycle = math.floor(time_ms / self.period_ms) * self.period_ms
        piece = bisect.bisect_right(self.starts_ms, time_ms - cycle) - 1
        self._set_span(cycle, piece)
        # time_ms - cycle and cycle + start round differently: the time can land a hair past
        # the span found, and asking again at the span's end would find the same span forever
        if time_ms >= self._span_end:
            if piece + 1 < len(self.starts_ms):
                self._set_span(cycle, piece + 1)
            else:
                self._set_span(cycle + self.period_ms, 0)
        return self._span_piece

    def _set_span(self, cycle: float, piece: int) -> None:
        self._span_piece = piece
        self._span_start = cycle + self.starts_ms[piece]
        self._span_end = cycle + (
            self.starts_ms[piece + 1] if piece + 1 < len(self.starts_ms) else self.period_ms
        )

    def _service_start(self, time_ms: float) -> float:
        """The first moment from ``time_ms`` at which the rate is not zero (inf: never)."""
        for _ in range(len(self.starts_ms) + 1):
            rate = self.pieces[self.piece_at(time_ms)][0]
            if rate is None or rate > 0:
                return time_ms
            time_ms = self._span_end
        return STRANDED

    def _admitted_at(self, at: float, packets: int, attempt: int) -> tuple[float, bool]:
        """(time, True) when the message gets past loss and the drop-tail queue, or
        (time of the next try, False) after a loss on a shared link, whose retries must
        come back as events; (STRANDED, False) once TCP would give up."""
        while attempt < MAX_ATTEMPTS:
            _, delay, _, loss = self.pieces[self.piece_at(at)]
            if loss > 0 and self.rng.random() < 1 - (1 - loss) ** packets:
                self.counters["lost"] += 1
            elif not self.shared or self._queue_has_room(at, packets):
                return at, True
            else:
                self.counters["queue_drops"] += 1
            at += retransmit_wait_ms(delay, attempt, self.rng)
            attempt += 1
            if self.shared:
                return at, False
        self.counters["gave_up"] += 1
        return STRANDED, False

    def _queue_has_room(self, at: float, packets: int) -> bool:
        """Drop-tail: count the packets still waiting for the rate stage at ``at``."""
        queue = self.in_queue
        while queue and queue[0][0] <= at:
            self.queued_packets -= queue.popleft()[1]
        return self.queued_packets + packets <= self.queue_packets

    def transit(self, payload: int, at: float, attempt: int = 0) -> tuple[float, bool]:
        """A message of ``payload`` bytes enters at ``at`` (its ``attempt``-th try); returns
        (when it comes out, True), or (when to try again, False) after a loss on a shared
        link, or (STRANDED, False).

        The simulator's hot path: the piece lookup is inlined for the usual case (the same
        piece as last time), and loss and the queue are only looked at when they can matter.
        """
        wire, packets = wire_bytes(payload)
        piece = self._span_piece if self._span_start <= at < self._span_end else self.piece_at(at)
        if self.pieces[piece][3] > 0 or (self.shared and self.free_at > at):
            at, admitted = self._admitted_at(at, packets, attempt)
            if not admitted:
                return at, False
        start = self.free_at if self.free_at > at else at
        if not self._span_start <= start < self._span_end:
            self.piece_at(start)
        rate = self.pieces[self._span_piece][0]
        if rate == 0:
            start = self._service_start(start)
            if start == STRANDED:
                self.counters["stranded"] += 1
                return STRANDED, False
            rate = self.pieces[self._span_piece][0]
        finish = start + wire * 0.008 / rate if rate else start
        if self.shared:
            if self.free_at <= at:  # the link was idle: nobody else is queued
                self.in_queue.clear()
                self.queued_packets = 0
            self.in_queue.append((finish, packets))
            self.queued_packets += packets
        self.free_at = finish
        if not self._span_start <= finish < self._span_end:
            self.piece_at(finish)  # the delay in force as it leaves the rate stage
        _, delay, jitter, _ = self.pieces[self._span_piece]
        if delay != self.last_delay:  # a new delay may overtake, as in the shaper
            self.last_delay, self.last_release = delay, 0.0
        if jitter > 0:
            delay = self.rng.gauss(delay, jitter)
            if delay < 0:
                delay = 0.0
        release = finish + delay
        if release < self.last_release:
            release = self.last_release
        self.last_release = release
        self.sent += 1
        self.wire_bytes += wire
        return release, True


class SimPath:
    """Links in series, e.g. an edge's access uplink then the shared WAN uplink: one TCP
    connection's direction, so messages come out in the order they were sent (one that a
    new, shorter delay or a retransmission lets overtake waits for those before it, as TCP
    holds data until the gap is filled)."""

    def __init__(self, engine: Engine, links: list[Any]) -> None:
        """``links``: ``SimLink``s and ``PacketLink``s (entered by an event, calling back
        when a message is through), in the order a message crosses them."""
        if not links:
            raise ValueError("a path needs at least one link")
        self.engine = engine
        self.links = links
        self._sent = 0  # messages sent: the next one's sequence number
        self._delivered = 0  # messages delivered: the next one due
        self._held: dict[int, tuple[Deliver, Any]] = {}

    def send(self, payload: int, deliver: Deliver, message: Any, at: float | None = None) -> None:
        """Send now (or at ``at``, on a first link the caller feeds in time order);
        ``deliver(message)`` runs when the message comes out of the last link, and every
        message sent before it has."""
        envelope = (self._sent, deliver, message)
        self._sent += 1
        self._cross((0, 0, payload, self._arrive, envelope), self.engine.now if at is None else at)

    def _arrive(self, envelope: tuple[int, Deliver, Any]) -> None:
        sequence, deliver, message = envelope
        if sequence != self._delivered:
            self._held[sequence] = (deliver, message)
            return
        deliver(message)
        self._delivered += 1
        while self._delivered in self._held:
            deliver, message = self._held.pop(self._delivered)
            deliver(message)
            self._delivered += 1

    def _cross(self, item: tuple[int, int, int, Deliver, Any], at: float) -> None:
        """Carry a message (link index, attempt on it, payload, deliver, message) from ``at``
        over the links it can cross without waiting for an event."""
        index, attempt, payload, deliver, message = item
        links = self.links
        while True:
            link = links[index]
            if link.per_packet:
                if at > self.engine.now:
                    self.engine.at(at, self._hop, (index, 0, payload, deliver, message))
                else:
                    leave = functools.partial(self._leave, index, payload, deliver, message)
                    link.enter(payload, at, leave)
                return
            at, through = link.transit(payload, at, attempt)
            if not through:
                if at != STRANDED:
                    self.engine.at(at, self._hop, (index, attempt + 1, payload, deliver, message))
                return
            index += 1
            attempt = 0
            if index == len(links):
                self.engine.at(at, deliver, message)
                return
            if links[index].shared:
                self.engine.at(at, self._hop, (index, 0, payload, deliver, message))
                return

    def _hop(self, item: tuple[int, int, int, Deliver, Any]) -> None:
        self._cross(item, self.engine.now)

    def _leave(self, index: int, payload: int, deliver: Deliver, message: Any, at: float) -> None:
        """A message came out of a link followed packet by packet at ``at``: on to the next."""
        if index + 1 == len(self.links):
            self.engine.at(at, deliver, message)
        else:
            self._cross((index + 1, 0, payload, deliver, message), at)
