"""One direction of a link as a chain of stages a packet crosses in order, on any clock.

Stages: ``LossStage`` (i.i.d. loss), ``LinkStage`` (a queue discipline in front of the
wire: a rate, or Mahimahi's delivery opportunities) and ``DelayStage`` (one-way delay and
jitter, order kept). The delay line runs a ``Pipe`` on the real clock with Ethernet frames;
the simulator's packet-level link runs the same ``Pipe`` on simulated time with its
messages' packets, so what a queue drops, and when an opportunity carries what, is decided
by one piece of code in both worlds. Times are ms.

A stage is lazy: it computes what happened up to ``now`` when asked (``pull``), and a packet
pushed at time t is queued after everything the stage would have done before t (as
Mahimahi's ``rationalize`` does before it enqueues).
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from emulator.link.mahimahi_log import MahimahiLog
from emulator.link.queues import FRAME_HEADER, PACKET_SIZE, Packet, QueueSpec

INF = math.inf


class Stage(Protocol):
    """What every stage offers the pipe."""

    def push(self, packet: Packet, dropped: list[Packet]) -> None:
        """Take a packet that reached the stage at ``packet[0]``; drops go to ``dropped``."""
        ...

    def pull(self, now: float, dropped: list[Packet]) -> list[Packet]:
        """Packets that left by ``now``, each stamped with the time it left, in order."""
        ...

    def next_event(self) -> float:
        """When the stage next has something to do (INF: nothing without a new packet)."""
        ...


class LossStage:
    """Drops each packet independently with probability ``rate`` (a fraction)."""

    def __init__(self, rate: float, rng: random.Random, follows_trace: bool = False) -> None:
        self.rate = rate
        self.rng = rng
        self.follows_trace = follows_trace
        self.drops = 0
        self.passed: list[Packet] = []

    def push(self, packet: Packet, dropped: list[Packet]) -> None:
        if self.rate > 0 and self.rng.random() < self.rate:
            self.drops += 1
            dropped.append(packet)
        else:
            self.passed.append(packet)

    def pull(self, now: float, dropped: list[Packet]) -> list[Packet]:
        passed, self.passed = self.passed, []
        return passed

    def next_event(self) -> float:
        return self.passed[0][0] if self.passed else INF


class DelayStage:
    """Holds each packet for the delay (plus Gaussian jitter), never letting a packet
    overtake one delayed under the same setting; after the delay changes, new packets may
    overtake older ones, as with netem: the new delay shows at once."""

    def __init__(
        self, delay_ms: float, jitter_ms: float, rng: random.Random, follows_trace: bool = False
    ) -> None:
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.rng = rng
        self.follows_trace = follows_trace
        self.in_flight: list[tuple[float, int, Packet]] = []  # heap of (release, order, packet)
        self.order = 0
        self.last_release = -INF

    def set(self, delay_ms: float, jitter_ms: float) -> None:
        if delay_ms != self.delay_ms:
            self.last_release = -INF
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms

    def push(self, packet: Packet, dropped: list[Packet]) -> None:
        delay = self.delay_ms
        if self.jitter_ms > 0:
            delay = max(0.0, self.rng.gauss(delay, self.jitter_ms))
        release = max(packet[0] + delay, self.last_release)
        self.last_release = release
        self.order += 1
        heapq.heappush(self.in_flight, (release, self.order, packet))

    def pull(self, now: float, dropped: list[Packet]) -> list[Packet]:
        out = []
        while self.in_flight and self.in_flight[0][0] <= now:
            release, _, packet = heapq.heappop(self.in_flight)
            out.append((release, packet[1], packet[2]))
        return out

    def next_event(self) -> float:
        return self.in_flight[0][0] if self.in_flight else INF


class Opportunities:
    """Mahimahi delivery opportunities from ``start`` ms: the k-th at
    ``start + (k // n) * period + offsets[k % n]``, the period being the last offset;
    ``once``: the schedule is played once, then there are none."""

    def __init__(self, offsets_ms: np.ndarray, start: float, once: bool = False) -> None:
        self.offsets = np.asarray(offsets_ms, dtype=float)
        self.offset_list: list[float] = self.offsets.tolist()  # fast single lookups
        self.count = len(self.offsets)
        self.period = float(self.offsets[-1])
        self.start = start
        self.once = once

    def time(self, k: int) -> float:
        if self.once and k >= self.count:
            return INF
        return self.start + (k // self.count) * self.period + self.offset_list[k % self.count]

    def first_at_or_after(self, t: float) -> int:
        elapsed = max(0.0, t - self.start)
        periods = int(elapsed // self.period)
        index = int(np.searchsorted(self.offsets, elapsed - periods * self.period, side="left"))
        first = periods * self.count + index
        return min(first, self.count) if self.once else first


class LinkStage:
    """A queue discipline in front of the wire. The wire is a rate (Mbit/s of Ethernet
    frames; None: unlimited; 0: an outage, the queue held until the rate returns) or a
    schedule of delivery opportunities, each carrying up to ``PACKET_SIZE`` bytes: a packet
    may span several, several small ones may share one, and bytes an opportunity finds no
    packet for are wasted (Mahimahi's byte accounting). The head packet leaves the queue as
    it starts on the wire (a rate) or at the opportunity that starts it, which is when
    CoDel judges its sojourn time."""

    def __init__(self, queue: QueueSpec, rng: random.Random, log: MahimahiLog | None = None):
        self.queue = queue.build(rng)
        self.rate_mbps: float | None = None
        self.rate_since = -INF
        self.free_at = -INF  # rate: when the wire is free
        self.opportunities: Opportunities | None = None
        self.next_opportunity = 0
        self.in_transit: Packet | None = None
        self.bytes_left = 0  # of the packet in transit (opportunities)
        self.finish = INF  # of the packet in transit (a rate)
        self.clock = -INF  # the stage has done everything up to here
        self.log = log
        self.drops = 0
        self.departed: list[Packet] = []

    def set_rate(self, rate_mbps: float | None, now: float) -> None:
        """A new rate from ``now`` (the stage was served, and its capacity logged, up to
        ``now`` first)."""
        if rate_mbps != self.rate_mbps:
            self.rate_since = now
        self.rate_mbps = rate_mbps

    def use_opportunities(self, opportunities: Opportunities | None) -> None:
        """Serve by delivery opportunities from now on (None: by the rate again)."""
        self.opportunities = opportunities
        self.next_opportunity = 0

    def push(self, packet: Packet, dropped: list[Packet]) -> None:
        now = max(packet[0], self.clock)
        packet = (now, packet[1], packet[2])
        self.serve(now, dropped)
        lost = self.queue.enqueue(packet, now)
        self.drops += len(lost)
        if self.log is not None:
            self.log.arrival(now, packet[1])
            if lost:
                self.log.drop(now, len(lost), sum(p[1] for p in lost))
        dropped.extend(lost)

    def pull(self, now: float, dropped: list[Packet]) -> list[Packet]:
        self.serve(now, dropped)
        departed, self.departed = self.departed, []
        return departed

    def next_event(self) -> float:
        if self.in_transit is None and not self.queue:
            return INF
        if self.opportunities is not None:
            return self.opportunities.time(self.next_opportunity)
        if self.in_transit is not None:
            return self.finish
        return self._rate_start()

    def _skip_idle_opportunities(self, now: float) -> None:
        """Opportunities that passed while nothing waited go unused (logged as capacity)."""
        assert self.opportunities is not None
        first = self.opportunities.first_at_or_after(now)
        if self.log is not None:
            for k in range(self.next_opportunity, first):
                self.log.opportunity(self.opportunities.time(k))
        self.next_opportunity = max(self.next_opportunity, first)

    def _rate_start(self) -> float:
        """When the head packet can start on the wire at the current rate (INF: an outage)."""
        rate = self.rate_mbps
        if rate is not None and rate <= 0:
            return INF
        start = max(self.queue.waiting[0][0], self.free_at)
        return start if rate is None else max(start, self.rate_since)

    def serve(self, now: float, dropped: list[Packet]) -> None:
        """Do everything the wire does up to ``now``."""
        if self.opportunities is not None:
            self._serve_opportunities(now, dropped)
        else:
            if self.log is not None:
                self.log.capacity(self.rate_mbps, now)
            self._serve_rate(now, dropped)
        self.clock = max(self.clock, now)

    def _depart(self, packet: Packet, at: float) -> None:
        self.departed.append((at, packet[1], packet[2]))
        if self.log is not None:
            self.log.departure(at, packet[1], packet[0])

    def _dequeue(self, at: float, dropped: list[Packet]) -> Packet | None:
        packet, lost = self.queue.dequeue(at)
        if lost:
            self.drops += len(lost)
            dropped.extend(lost)
            if self.log is not None:
                self.log.drop(at, len(lost), sum(p[1] for p in lost))
        return packet

    def _serve_rate(self, now: float, dropped: list[Packet]) -> None:
        while True:
            if self.in_transit is not None:
                if self.finish > now:
                    return
                self._depart(self.in_transit, self.finish)
                self.in_transit = None
            if not self.queue:
                return
            start = self._rate_start()
            if start > now:
                return
            packet = self._dequeue(start, dropped)
            if packet is None:
                continue
            rate = self.rate_mbps
            frame = packet[1] + FRAME_HEADER
            finish = start if rate is None else start + frame * 8 / (rate * 1000.0)
            self.in_transit, self.finish, self.free_at = packet, finish, finish

    def _serve_opportunities(self, now: float, dropped: list[Packet]) -> None:
        schedule = self.opportunities
        assert schedule is not None
        while self.in_transit is not None or self.queue:
            at = schedule.time(self.next_opportunity)
            if at > now:
                return
            self.next_opportunity += 1
            if self.log is not None:
                self.log.opportunity(at)
            budget = PACKET_SIZE
            while budget > 0:
                if self.in_transit is None:
                    self.in_transit = self._dequeue(at, dropped)
                    if self.in_transit is None:
                        break
                    self.bytes_left = self.in_transit[1]
                sent = min(budget, self.bytes_left)
                budget -= sent
                self.bytes_left -= sent
                if self.bytes_left == 0:
                    self._depart(self.in_transit, at)
                    self.in_transit = None
        self._skip_idle_opportunities(now)


class Pipe:
    """One direction: stages in the order a packet crosses them. ``send`` puts a packet
    in; ``advance(now)`` returns the packets out of the last stage by ``now`` (each stamped
    with its exit time) and those dropped on the way."""

    def __init__(self, stages: list[Stage], once: bool = False) -> None:
        self.stages = stages
        self.once = once
        self.link: LinkStage = next(s for s in stages if isinstance(s, LinkStage))
        self.received = 0
        self.delivered = 0

    def send(self, packet: Packet, dropped: list[Packet]) -> None:
        self.received += 1
        self.stages[0].push(packet, dropped)

    def advance(self, now: float) -> tuple[list[Packet], list[Packet]]:
        dropped: list[Packet] = []
        moving: list[Packet] = []
        for stage in self.stages:
            for packet in moving:
                stage.push(packet, dropped)
            moving = stage.pull(now, dropped)
        self.delivered += len(moving)
        return moving, dropped

    def next_event(self) -> float:
        return min(stage.next_event() for stage in self.stages)

    def set_trace_values(
        self,
        rate_mbps: float | None,
        delay_ms: float,
        jitter_ms: float,
        loss_pct: float,
        now: float,
    ) -> None:
        """The trace's values from ``now`` (the pipe advanced to ``now`` first): the
        wire's rate, and the stages that follow the trace."""
        self.link.set_rate(rate_mbps, now)
        for stage in self.stages:
            if isinstance(stage, LossStage) and stage.follows_trace:
                stage.rate = loss_pct / 100.0
            elif isinstance(stage, DelayStage) and stage.follows_trace:
                stage.set(delay_ms, jitter_ms)

    def use_deliveries(self, offsets_ms: np.ndarray | None, now: float) -> None:
        """Serve by these delivery opportunities from ``now`` (None: by the rate again);
        the pipe advanced to ``now`` first."""
        schedule = None if offsets_ms is None else Opportunities(offsets_ms, now, self.once)
        self.link.use_opportunities(schedule)

    def counters(self) -> dict[str, int]:
        """What happened to the packets so far (for the delay line's stats)."""
        return {
            "received": self.received,
            "lost": sum(s.drops for s in self.stages if isinstance(s, LossStage)),
            "queue_drops": self.link.drops,
            "sent": self.delivered,
        }


STAGE_KINDS = ("loss", "link", "delay")


@dataclass(frozen=True)
class PipeLayout:
    """How one direction is built: its stages in the order a packet crosses them, each
    ``(kind, value)`` with ``value`` None where the stage follows the link's trace (its
    loss %, or delay and jitter, changed live) and a number where it is fixed (``mm-loss``'s
    rate as a fraction, ``mm-delay``'s ms); the queue in front of the wire; and whether a
    schedule of delivery opportunities plays once rather than looping. ``seed``, where
    given, fixes the stages' random draws (loss, jitter, PIE's drops) whatever stream the
    builder is handed: both worlds then draw the same numbers for the same packets."""

    stages: tuple[tuple[str, float | None], ...] = (("loss", None), ("link", None), ("delay", None))
    queue: QueueSpec = field(default_factory=QueueSpec)
    once: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        kinds = [kind for kind, _ in self.stages]
        if kinds.count("link") != 1 or any(kind not in STAGE_KINDS for kind in kinds):
            raise ValueError(f"a direction needs one link stage among loss/delay: {kinds}")

    @property
    def plain(self) -> bool:
        """Loss, the wire and delay in that order (any may be missing), following the trace,
        with a drop-tail packet queue and a looping schedule: what the simulator's analytic
        link models."""
        kinds = [kind for kind, _ in self.stages]
        in_order = kinds == [kind for kind in STAGE_KINDS if kind in kinds]
        traced = all(value is None for _, value in self.stages)
        queue = self.queue.kind == "droptail" and self.queue.bytes is None
        return in_order and traced and queue and not self.once

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [list(stage) for stage in self.stages],
            "queue": self.queue.to_dict(),
            "once": self.once,
            "seed": self.seed,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> PipeLayout:
        return PipeLayout(
            tuple((str(kind), value) for kind, value in data["stages"]),
            QueueSpec(**data["queue"]),
            bool(data.get("once", False)),
            data.get("seed"),
        )

    def build(self, rng: random.Random, log: MahimahiLog | None = None) -> Pipe:
        """A pipe of fresh stages; the trace-driven ones start unconstrained."""
        if self.seed is not None:
            rng = random.Random(self.seed)
        stages: list[Stage] = []
        for kind, value in self.stages:
            child = random.Random(rng.random())
            if kind == "loss":
                stages.append(LossStage(value or 0.0, child, follows_trace=value is None))
            elif kind == "delay":
                stages.append(DelayStage(value or 0.0, 0.0, child, follows_trace=value is None))
            else:
                stages.append(LinkStage(self.queue, child, log))
        return Pipe(stages, self.once)
