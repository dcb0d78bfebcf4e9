"""A userspace delay line: the shaping backend for kernels without ``sch_netem``.

It runs in a middle host with two interfaces and no IP address, and moves Ethernet frames
between two AF_PACKET sockets. Each direction is a pipe: loss -> rate limit with a bounded
tail-drop queue -> delay + jitter, order preserved. Parameters change live through a UNIX
datagram socket (msgpack maps: ``{"direction": "up", "rate_mbps": ..., "delay_ms": ...}``;
``{"direction": "up", "deliveries_file": PATH.npy}`` switches that direction to packet-exact
replay of Mahimahi delivery opportunities; ``{"stats": true}`` is answered with the
counters. The process asks for SCHED_FIFO so that its timers fire within microseconds
(measured here: p99 lateness ~3.6 ms without it).

Run (as root, inside the middle host's namespace):
    python -m emulator.net.shaping.delayline --up-in IF_EDGE --down-in IF_CLOUD --control PATH
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import heapq
import math
import os
import random
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from emulator.net.shaping.base import ShapeParams
from runtime.process import parse_cpus, pin

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
MAX_FRAME = 65536
SO_TIMESTAMPNS = 35  # Linux; Python does not name it (SCM_TIMESTAMPNS has the same value)
ANCILLARY_BYTES = 64
SPIN_S = 0.0003
OPPORTUNITY_BYTES = 1504  # what one Mahimahi delivery opportunity carries
SETTABLE = ("rate_mbps", "delay_ms", "jitter_ms", "loss_pct", "queue_packets")


@dataclass
class Pipe:
    """One direction: frames in from one socket, out of the other, shaped on the way.

    The rate stage is one FIFO server: the head frame starts when the link is free, it has
    arrived, and the current rate is in force (so an outage's backlog is not "served" in
    the past), and takes size x 8 / rate. Then it waits delay + jitter, never overtaking a
    frame delayed under the same setting.
    """

    out: socket.socket
    params: ShapeParams = field(default_factory=ShapeParams)
    rng: random.Random = field(default_factory=random.Random)
    waiting: collections.deque = field(default_factory=collections.deque)  # (arrival, frame)
    in_flight: list = field(default_factory=list)  # heap of (release, sequence, frame)
    sequence: int = 0
    link_free_at: float = 0.0
    rate_since: float = 0.0
    last_release: float = 0.0
    counters: collections.Counter = field(default_factory=collections.Counter)
    deliveries: np.ndarray | None = None
    schedule_start: float = 0.0
    period_ms: float = 0.0
    opportunity: int = 0
    budget: int = 0

    def update(self, params: ShapeParams, now: float) -> None:
        if params.rate_mbps != self.params.rate_mbps:
            self.rate_since = now
        if params.delay_ms != self.params.delay_ms:
            # Order is kept within one setting (jitter never reorders), but frames sent after
            # a delay drop may overtake older ones, as in netem: the new delay shows at once.
            self.last_release = 0.0
        self.params = params

    def arrive(self, frame: bytes, now: float) -> None:
        self.counters["received"] += 1
        if self.params.loss_pct > 0 and self.rng.random() * 100.0 < self.params.loss_pct:
            self.counters["lost"] += 1
            return
        if len(self.waiting) >= self.params.queue_packets:
            self.counters["queue_drops"] += 1
            return
        self.waiting.append((now, frame))

    def use_deliveries(self, deliveries_ms: np.ndarray | None, now: float) -> None:
        """Packet-exact replay of Mahimahi delivery opportunities (None: back to the rate).

        Opportunity k is at ``now + (k // n) * period + deliveries[k % n]`` ms, the period
        being the last timestamp (Mahimahi loops there); each carries ``OPPORTUNITY_BYTES``,
        which frames use up in order and may span.
        """
        self.deliveries = deliveries_ms
        if deliveries_ms is not None:
            self.schedule_start = now
            self.period_ms = float(deliveries_ms[-1])
            self.opportunity, self.budget = 0, OPPORTUNITY_BYTES

    def _opportunity_time(self, k: int) -> float:
        n = len(self.deliveries)
        return self.schedule_start + ((k // n) * self.period_ms + self.deliveries[k % n]) / 1000

    def _first_opportunity_after(self, t: float) -> int:
        n = len(self.deliveries)
        elapsed_ms = max(0.0, (t - self.schedule_start) * 1000.0)
        periods = int(elapsed_ms // self.period_ms)
        index = int(np.searchsorted(self.deliveries, elapsed_ms - periods * self.period_ms))
        return periods * n + index

    def _exact_finish(self, arrival: float, size: int) -> tuple[float, int, int]:
        """(departure, opportunity, bytes left in it) for the head frame."""
        k, budget = self.opportunity, self.budget
        if self._opportunity_time(k) < arrival:  # opportunities while idle go unused
            k, budget = max(k + 1, self._first_opportunity_after(arrival)), OPPORTUNITY_BYTES
        while size > budget:
            size -= budget
            k, budget = k + 1, OPPORTUNITY_BYTES
        return self._opportunity_time(k), k, budget - size

    def _head_finish(self) -> float:
        """When the head frame leaves the rate stage (inf during an outage)."""
        arrival, frame = self.waiting[0]
        if self.deliveries is not None:
            return self._exact_finish(arrival, len(frame))[0]
        rate = self.params.rate_mbps
        if rate is None:
            return arrival
        if rate <= 0:
            return math.inf
        start = max(self.link_free_at, arrival, self.rate_since)
        return start + len(frame) * 8 / (rate * 1e6)

    def _delay_s(self) -> float:
        p = self.params
        delay = max(0.0, self.rng.gauss(p.delay_ms, p.jitter_ms)) if p.jitter_ms > 0 else p.delay_ms
        return delay / 1000.0

    def advance(self, now: float) -> None:
        """Move frames through the rate stage and send those whose time has come."""
        while self.waiting and (finish := self._head_finish()) <= now:
            arrival, frame = self.waiting.popleft()
            if self.deliveries is not None:
                _, self.opportunity, self.budget = self._exact_finish(arrival, len(frame))
            self.link_free_at = finish
            release = max(finish + self._delay_s(), self.last_release)
            self.last_release = release
            self.sequence += 1
            heapq.heappush(self.in_flight, (release, self.sequence, frame))
        while self.in_flight and self.in_flight[0][0] <= now:
            _, _, frame = heapq.heappop(self.in_flight)
            try:
                self.out.send(frame)
                self.counters["sent"] += 1
            except OSError:
                self.counters["send_errors"] += 1

    def next_event(self) -> float:
        candidates = [math.inf]
        if self.in_flight:
            candidates.append(self.in_flight[0][0])
        if self.waiting:
            candidates.append(self._head_finish())
        return min(candidates)


def open_packet_socket(interface: str) -> socket.socket:
    """A raw socket on ``interface`` seeing every frame (promiscuous), non-blocking."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, 0))
    index = socket.if_nametoindex(interface)
    membership = index.to_bytes(4, "little") + PACKET_MR_PROMISC.to_bytes(2, "little")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership + bytes(10))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    return sock


class DelayLine:
    """Forwards frames between two interfaces through two pipes until stopped."""

    def __init__(self, up_in: str, down_in: str, control: str, seed: int = 0) -> None:
        self.up_socket = open_packet_socket(up_in)
        self.down_socket = open_packet_socket(down_in)
        rng = random.Random(seed)
        # Uplink frames arrive on the edge side and leave on the cloud side, and vice versa.
        self.pipes = {
            "up": Pipe(self.down_socket, rng=random.Random(rng.random())),
            "down": Pipe(self.up_socket, rng=random.Random(rng.random())),
        }
        self.sources = {self.up_socket: "up", self.down_socket: "down"}
        if os.path.exists(control):
            os.unlink(control)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.control.bind(control)
        self.control.setblocking(False)
        self.control_path = control
        self.running = True
        self.updates = 0

    def stop(self, *_: Any) -> None:
        self.running = False

    def run(self) -> None:
        readable = [self.up_socket, self.down_socket, self.control]
        try:
            while self.running:
                now = time.monotonic()
                wake = min(pipe.next_event() for pipe in self.pipes.values())
                # Sleep until shortly before the next release, then poll: a VM's timer
                # wake-up is ~0.1 ms late, a poll loop over the last SPIN_S is not.
                timeout = min(max(0.0, wake - now - SPIN_S), 0.2)
                ready, _, _ = select.select(readable, [], [], timeout)
                now = time.monotonic()
                for sock in ready:
                    if sock is self.control:
                        self._control()
                    else:
                        self._receive(sock, now)
                for pipe in self.pipes.values():
                    pipe.advance(time.monotonic())
        finally:
            for sock in (self.up_socket, self.down_socket, self.control):
                sock.close()
            if os.path.exists(self.control_path):
                os.unlink(self.control_path)

    def _receive(self, sock: socket.socket, now: float) -> None:
        """Take every waiting frame, each stamped with the kernel's arrival time: the delay
        then runs from when the frame reached the interface, not from when we woke up."""
        pipe = self.pipes[self.sources[sock]]
        realtime_to_monotonic = time.monotonic() - time.time()
        while True:
            try:
                frame, ancillary, _, address = sock.recvmsg(MAX_FRAME, ANCILLARY_BYTES)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING:  # our own transmissions show up too
                continue
            arrived = now
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    seconds, nanoseconds = struct.unpack("qq", data[:16])
                    arrived = min(now, seconds + nanoseconds / 1e9 + realtime_to_monotonic)
            pipe.arrive(frame, arrived)

    def _control(self) -> None:
        while True:
            try:
                data, sender = self.control.recvfrom(65536)
            except BlockingIOError:
                return
            reply = self.apply(data)
            if sender:
                with contextlib.suppress(OSError):  # the asker went away: nothing to tell
                    self.control.sendto(msgpack.packb(reply), sender)

    def apply(self, data: bytes) -> dict[str, Any]:
        """Apply one control message; invalid ones change nothing and say why."""
        try:
            message = msgpack.unpackb(data, raw=False)
            if message.get("stats"):
                return {
                    "ok": True,
                    "updates": self.updates,
                    **{d: dict(p.counters) for d, p in self.pipes.items()},
                }
            pipe = self.pipes[message["direction"]]
            if "deliveries_file" in message:
                pipe.use_deliveries(_load_deliveries(message["deliveries_file"]), time.monotonic())
                self.updates += 1
                return {"ok": True}
            values = {k: message[k] for k in SETTABLE if k in message}
            params = ShapeParams(**{**pipe.params.to_dict(), **values})
            if params.queue_packets < 1 or params.loss_pct < 0 or params.delay_ms < 0:
                raise ValueError("queue must be >= 1, loss and delay >= 0")
            pipe.update(params, time.monotonic())
            self.updates += 1
            return {"ok": True}
        except Exception as exc:  # any malformed control message: report, keep forwarding
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _load_deliveries(path: str | None) -> np.ndarray | None:
    """Delivery opportunities (ms, sorted, a positive last value) from a .npy file."""
    if path is None:
        return None
    deliveries = np.load(path, allow_pickle=False).astype(float)
    if deliveries.ndim != 1 or deliveries.size == 0 or deliveries[-1] <= 0:
        raise ValueError("deliveries must be a non-empty list ending after 0 ms")
    if np.any(np.diff(deliveries) < 0) or deliveries[0] < 0:
        raise ValueError("deliveries must be sorted and >= 0")
    return deliveries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--up-in", required=True, help="interface towards the edge")
    parser.add_argument("--down-in", required=True, help="interface towards the cloud")
    parser.add_argument("--control", required=True, help="UNIX socket path for updates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--priority", type=int, default=50, help="SCHED_FIFO priority; 0 = off")
    parser.add_argument("--cpus", help="pin to these CPUs, e.g. 0 (default: any)")
    args = parser.parse_args(argv)
    try:
        pin(parse_cpus(args.cpus))
    except ValueError as exc:
        print(f"delayline: error: {exc}", flush=True)
        return 2
    if args.priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.priority))
        except (PermissionError, OSError) as exc:
            print(f"delayline: no real-time scheduling ({exc}); timers will be late", flush=True)
    line = DelayLine(args.up_in, args.down_in, args.control, args.seed)
    signal.signal(signal.SIGTERM, line.stop)
    signal.signal(signal.SIGINT, line.stop)
    print(
        f"delayline: forwarding {args.up_in} <-> {args.down_in}, control {args.control}", flush=True
    )
    line.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
