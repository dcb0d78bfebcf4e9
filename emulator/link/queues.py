"""Mahimahi's packet queues, as one link direction holds its packets waiting for the wire.

``infinite`` (Mahimahi's default), ``droptail`` and ``drophead`` with a ``packets`` and/or
``bytes`` limit, ``codel`` (RFC 8289: ``target``, ``interval``) and ``pie`` (Mahimahi's PIE:
``qdelay_ref``, ``max_burst``), each of the last two with a limit as well. Times are in ms on
whatever clock the caller keeps: the delay line's real one or the simulator's. A packet is
``(arrival ms, bytes, what it carries)``, its bytes those of its IP packet, as Mahimahi counts
them. The delay line and the simulator's link both hold their packets in these same
objects, so the two worlds cannot drop differently by design.

Where Mahimahi gives no default (it refuses a CoDel or PIE queue without its parameters),
the RFCs' are taken: CoDel target 5 ms, interval 100 ms; PIE qdelay_ref 15 ms, max_burst
150 ms. One departure from Mahimahi's CoDel: when it drops, it delivers the packet the RFC
drops and drops the one behind it; here the head is dropped and the next one delivered, as
RFC 8289's pseudocode does (the same number of drops at the same times).
"""

from __future__ import annotations

import collections
import math
import random
import re
from dataclasses import asdict, dataclass
from typing import Any

PACKET_SIZE = 1504  # bytes one delivery opportunity carries (Mahimahi's PACKET_SIZE)
FRAME_HEADER = 14  # Ethernet's, on top of the IP packet Mahimahi counts: a frame's size on a wire
KINDS = ("infinite", "droptail", "drophead", "codel", "pie")
LIMITED = ("droptail", "drophead", "codel", "pie")  # Mahimahi's DroppingPacketQueue kinds
PIE_UPDATE_MS = 30.0  # PIE's probability update period (t_update)
PIE_ALPHA = 0.125
PIE_BETA = 1.25
PIE_DEQUEUE_THRESHOLD = 16384  # bytes: a queue this long measures the departure rate

Packet = tuple[float, int, Any]  # (arrival ms, bytes, what it carries)

ARGUMENT_NAMES = {  # Mahimahi's queue-args names -> ours
    "packets": "packets",
    "bytes": "bytes",
    "target": "target_ms",
    "interval": "interval_ms",
    "qdelay_ref": "qdelay_ref_ms",
    "max_burst": "max_burst_ms",
}
KIND_ARGUMENTS = {
    "infinite": (),
    "droptail": ("packets", "bytes"),
    "drophead": ("packets", "bytes"),
    "codel": ("packets", "bytes", "target", "interval"),
    "pie": ("packets", "bytes", "qdelay_ref", "max_burst"),
}


class QueueSpecError(ValueError):
    """A queue discipline or its arguments are invalid; the message says which."""


@dataclass(frozen=True)
class QueueSpec:
    """One direction's queue discipline and its arguments (``None``: no such limit)."""

    kind: str = "droptail"
    packets: int | None = 100
    bytes: int | None = None
    target_ms: float = 5.0
    interval_ms: float = 100.0
    qdelay_ref_ms: float = 15.0
    max_burst_ms: float = 150.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise QueueSpecError(f"unknown queue {self.kind!r} (known: {', '.join(KINDS)})")
        for name in ("packets", "bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise QueueSpecError(f"{self.kind}: {name} must be a whole number >= 1")
        if self.kind in LIMITED and self.packets is None and self.bytes is None:
            raise QueueSpecError(f"{self.kind}: needs a limit (packets= or bytes=)")
        for name in ("target_ms", "interval_ms", "qdelay_ref_ms", "max_burst_ms"):
            if not getattr(self, name) > 0:
                raise QueueSpecError(f"{self.kind}: {name} must be > 0")

    @staticmethod
    def infinite() -> QueueSpec:
        return QueueSpec("infinite", packets=None)

    @staticmethod
    def from_mahimahi(kind: str, arguments: str = "") -> QueueSpec:
        """``--uplink-queue=KIND --uplink-queue-args=ARGS`` as mm-link takes them, e.g.
        ``codel`` and ``"packets=1000, target=5, interval=100"``."""
        allowed = KIND_ARGUMENTS.get(kind)
        if allowed is None:
            raise QueueSpecError(f"unknown queue {kind!r} (known: {', '.join(KINDS)})")
        values: dict[str, Any] = {"kind": kind, "packets": None}
        for item in filter(None, (part.strip() for part in arguments.split(","))):
            match = re.fullmatch(r"([a-z_]+)\s*=\s*(\d+)", item)
            if match is None:
                raise QueueSpecError(f"{kind}: cannot read queue argument {item!r} (NAME=NUMBER)")
            name, number = match.groups()
            if name not in allowed:
                known = ", ".join(allowed) or "none"
                raise QueueSpecError(f"{kind}: unknown argument {name!r} (known: {known})")
            ours = ARGUMENT_NAMES[name]
            values[ours] = float(number) if ours.endswith("_ms") else int(number)
        return QueueSpec(**values)

    def describe(self) -> str:
        """As Mahimahi's logs name a queue: ``droptail [packets=100]``."""
        if self.kind == "infinite":
            return "infinite"
        parts = [f"bytes={self.bytes}"] if self.bytes else []
        parts += [f"packets={self.packets}"] if self.packets else []
        if self.kind == "codel":
            parts += [f"target={self.target_ms:g}", f"interval={self.interval_ms:g}"]
        elif self.kind == "pie":
            parts += [f"qdelay_ref={self.qdelay_ref_ms:g}", f"max_burst={self.max_burst_ms:g}"]
        return f"{self.kind} [{', '.join(parts)}]"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build(self, rng: random.Random | None = None) -> PacketQueue:
        """A fresh queue of this discipline (PIE draws its drops from ``rng``)."""
        if self.kind == "codel":
            return CoDelQueue(self)
        if self.kind == "pie":
            return PieQueue(self, rng or random.Random(0))
        if self.kind == "drophead":
            return DropHeadQueue(self)
        return DropTailQueue(self)  # infinite: a drop-tail queue without limits


class PacketQueue:
    """FIFO of packets with Mahimahi's size accounting; subclasses decide what to drop."""

    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.packet_limit = spec.packets or math.inf
        self.byte_limit = spec.bytes or math.inf
        self.waiting: collections.deque[Packet] = collections.deque()
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self.waiting)

    def fits(self, size_bytes: int, size_packets: int) -> bool:
        return size_bytes <= self.byte_limit and size_packets <= self.packet_limit

    def accept(self, packet: Packet) -> None:
        self.waiting.append(packet)
        self.size_bytes += packet[1]

    def pop(self) -> Packet:
        packet = self.waiting.popleft()
        self.size_bytes -= packet[1]
        return packet

    def enqueue(self, packet: Packet, now: float) -> list[Packet]:
        """Offer an arriving packet; returns the packets dropped (it, or others)."""
        raise NotImplementedError

    def dequeue(self, now: float) -> tuple[Packet | None, list[Packet]]:
        """The packet to send now (None: none), and the packets dropped on the way."""
        return (self.pop() if self.waiting else None), []


class DropTailQueue(PacketQueue):
    """Drops the arriving packet when it would not fit (no limit: ``infinite``)."""

    def enqueue(self, packet: Packet, now: float) -> list[Packet]:
        if self.fits(self.size_bytes + packet[1], len(self.waiting) + 1):
            self.accept(packet)
            return []
        return [packet]


class DropHeadQueue(PacketQueue):
    """Takes every arriving packet, then drops from the head until the queue fits."""

    def enqueue(self, packet: Packet, now: float) -> list[Packet]:
        self.accept(packet)
        dropped = []
        while not self.fits(self.size_bytes, len(self.waiting)):
            dropped.append(self.pop())
        return dropped


class CoDelQueue(DropTailQueue):
    """CoDel (RFC 8289): drop at dequeue once the sojourn time has stayed above ``target``
    for an ``interval``, then at intervals shrinking as 1/sqrt(drops) until it falls back.
    A queue holding at most one opportunity's bytes is never dropped from."""

    def __init__(self, spec: QueueSpec) -> None:
        super().__init__(spec)
        self.target = spec.target_ms
        self.interval = spec.interval_ms
        self.first_above_time: float | None = None
        self.drop_next = 0.0
        self.count = 0
        self.last_count = 0
        self.dropping = False

    def _control_law(self, t: float) -> float:
        return t + self.interval / math.sqrt(self.count)

    def _do_dequeue(self, now: float) -> tuple[Packet | None, bool]:
        """The head packet and whether CoDel may drop it."""
        if not self.waiting:
            self.first_above_time = None
            return None, False
        packet = self.pop()
        if not self.waiting:
            self.first_above_time = None
            return packet, False
        if now - packet[0] < self.target or self.size_bytes <= PACKET_SIZE:
            self.first_above_time = None
            return packet, False
        if self.first_above_time is None:
            self.first_above_time = now + self.interval
            return packet, False
        return packet, now >= self.first_above_time

    def dequeue(self, now: float) -> tuple[Packet | None, list[Packet]]:
        packet, ok_to_drop = self._do_dequeue(now)
        dropped: list[Packet] = []
        if self.dropping:
            if not ok_to_drop:
                self.dropping = False
            while self.dropping and now >= self.drop_next and packet is not None:
                dropped.append(packet)
                self.count += 1
                packet, ok_to_drop = self._do_dequeue(now)
                if ok_to_drop:
                    self.drop_next = self._control_law(self.drop_next)
                else:
                    self.dropping = False
        elif ok_to_drop and packet is not None:
            dropped.append(packet)
            packet, _ = self._do_dequeue(now)
            self.dropping = True
            delta = self.count - self.last_count
            recent = now - self.drop_next < 16 * self.interval
            self.count = delta if delta > 1 and recent else 1
            self.drop_next = self._control_law(now)
            self.last_count = self.count
        return packet, dropped


class PieQueue(DropTailQueue):
    """PIE as Mahimahi implements it: an arriving packet is dropped at random with a
    probability updated every 30 ms from the queueing delay (the queue's bytes over the
    measured departure rate) against ``qdelay_ref`` and its trend; ``max_burst`` ms of
    bursts pass undropped after an idle spell."""

    def __init__(self, spec: QueueSpec, rng: random.Random) -> None:
        super().__init__(spec)
        self.rng = rng
        self.qdelay_ref = spec.qdelay_ref_ms
        self.max_burst = spec.max_burst_ms
        self.drop_probability = 0.0
        self.burst_allowance = 0.0
        self.qdelay_old = 0.0
        self.qdelay = 0.0
        self.measuring_since: float | None = None  # when the departure count began
        self.departed_bytes = 0
        self.departure_rate = 0.0  # bytes per ms, smoothed
        self.last_update: float | None = None

    def enqueue(self, packet: Packet, now: float) -> list[Packet]:
        draw = self.rng.random()  # one per packet, used or not: the n-th packet's draw is
        # the same whatever the queue did before it (the two worlds' drops then line up)
        self._update_probability(now)
        if not self.fits(self.size_bytes + packet[1], len(self.waiting) + 1):
            return [packet]
        if self._drop_early(draw):
            return [packet]
        self.accept(packet)
        return []

    def _drop_early(self, draw: float) -> bool:
        if self.burst_allowance > 0:
            return False
        if self.qdelay_old < self.qdelay_ref / 2 and self.drop_probability < 0.2:
            return False
        if self.size_bytes < 2 * PACKET_SIZE:
            return False
        return draw < self.drop_probability

    def dequeue(self, now: float) -> tuple[Packet | None, list[Packet]]:
        if not self.waiting:
            return None, []
        packet = self.pop()
        if self.size_bytes >= PIE_DEQUEUE_THRESHOLD and self.measuring_since is None:
            self.measuring_since, self.departed_bytes = now, 0
        if self.measuring_since is not None:
            self.departed_bytes += packet[1]
            elapsed = now - self.measuring_since
            if self.departed_bytes > PIE_DEQUEUE_THRESHOLD and elapsed > 0:
                sample = self.departed_bytes / elapsed
                self.departure_rate = (
                    sample if self.departure_rate == 0 else 0.875 * self.departure_rate + sample / 8
                )
                if self.size_bytes < PIE_DEQUEUE_THRESHOLD:
                    self.measuring_since = None
                else:
                    self.measuring_since, self.departed_bytes = now, 0
                self.burst_allowance = max(0.0, self.burst_allowance - elapsed)
        self._update_probability(now)
        return packet, []

    def _update_probability(self, now: float) -> None:
        """The periodic update, run for every period that passed since the last one (the
        queue did not change in between, so the result is the timer's)."""
        if self.last_update is None:
            self.last_update = now
        while now - self.last_update > PIE_UPDATE_MS:
            self._update_once()
            self.last_update += PIE_UPDATE_MS

    def _update_once(self) -> None:
        self.qdelay_old = self.qdelay
        rate = self.departure_rate
        self.qdelay = self.size_bytes / rate if rate > 0 else 0.0
        update = not (self.qdelay == 0 and self.size_bytes != 0)
        change = PIE_ALPHA * (self.qdelay - self.qdelay_ref) + PIE_BETA * (
            self.qdelay - self.qdelay_old
        )
        if self.drop_probability < 0.01:
            change /= 128
        elif self.drop_probability < 0.1:
            change /= 32
        else:
            change /= 16
        self.drop_probability += change
        if self.drop_probability < 0:
            self.drop_probability = 0.0
        elif self.drop_probability > 1:
            self.drop_probability = 1.0
            update = False
        if self.qdelay == 0 and self.qdelay_old == 0 and update:
            self.drop_probability *= 0.98
        self.burst_allowance = max(0.0, self.burst_allowance - PIE_UPDATE_MS)
        idle = self.qdelay < self.qdelay_ref / 2 and self.qdelay_old < self.qdelay_ref / 2
        if self.drop_probability == 0 and idle and rate > 0:
            self.measuring_since = None
            self.departure_rate = 0.0
            self.burst_allowance = self.max_burst
