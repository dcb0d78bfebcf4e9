"""A userspace delay line: the shaping backend for kernels without ``sch_netem``.

It runs in a middle host with two interfaces and no IP address, and moves Ethernet frames
between two AF_PACKET sockets. Each direction is a ``Pipe`` (``emulator.link.pipe``): by
default loss -> a queue in front of a rate -> delay + jitter, order preserved; Mahimahi's
layouts (``mm-delay`` / ``mm-loss`` around ``mm-link``) reorder and add stages. Settings
change live through a UNIX datagram socket (msgpack maps):

- ``{"direction": "up", "rate_mbps": ..., "delay_ms": ..., "jitter_ms": ..., "loss_pct": ...}``
  the trace's values now;
- ``{"direction": "up", "layout": {...}, "log": {...} | None}`` rebuilds that direction
  (``PipeLayout.to_dict()``; ``log``: a Mahimahi-format packet log's path and header);
- ``{"direction": "up", "deliveries_file": PATH.npy}`` switches to packet-exact replay of
  Mahimahi delivery opportunities (None: back to the rate);
- ``{"stats": true}`` is answered with the counters.

The process asks for SCHED_FIFO so that its timers fire within microseconds (measured here:
p99 lateness ~3.6 ms without it).

Run (as root, inside the middle host's namespace):
    python -m emulator.net.shaping.delayline --up-in IF_EDGE --down-in IF_CLOUD --control PATH
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import select
import signal
import socket
import struct
import time
from typing import Any

import msgpack
import numpy as np

from emulator.link.mahimahi_log import MahimahiLog
from emulator.link.pipe import PipeLayout
from emulator.link.queues import FRAME_HEADER
from runtime.process import parse_cpus, pin

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
MAX_FRAME = 65536
SO_TIMESTAMPNS = 35  # Linux; Python does not name it (SCM_TIMESTAMPNS has the same value)
ANCILLARY_BYTES = 64
SPIN_MS = 0.3
LIVE = ("rate_mbps", "delay_ms", "jitter_ms", "loss_pct")


def now_ms() -> float:
    return time.monotonic() * 1000.0


class Direction:
    """One direction's pipe, the socket its frames leave by, and its packet log."""

    def __init__(self, out: socket.socket, rng: random.Random) -> None:
        self.out = out
        self.rng = rng
        self.values: dict[str, Any] = {
            "rate_mbps": None,
            "delay_ms": 0.0,
            "jitter_ms": 0.0,
            "loss_pct": 0.0,
        }
        self.log: MahimahiLog | None = None
        self.pipe = PipeLayout().build(random.Random(rng.random()))
        self.send_errors = 0

    def rebuild(self, layout: PipeLayout, log: MahimahiLog | None, now: float) -> None:
        """A fresh pipe of this layout; frames still in the old one are dropped (a layout
        is set before the traces start, while the link is idle)."""
        if self.log is not None:
            self.log.close()
        self.log = log
        self.pipe = layout.build(random.Random(self.rng.random()), log)
        self.set_values(self.values, now)

    def set_values(self, values: dict[str, Any], now: float) -> None:
        self.values = values
        self.advance(now)
        self.pipe.set_trace_values(
            values["rate_mbps"], values["delay_ms"], values["jitter_ms"], values["loss_pct"], now
        )

    def advance(self, now: float) -> None:
        released, _ = self.pipe.advance(now)
        for _, _, frame in released:
            try:
                self.out.send(frame)
            except OSError:
                self.send_errors += 1

    def counters(self) -> dict[str, int]:
        return {**self.pipe.counters(), "send_errors": self.send_errors}

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


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
        self.directions = {
            "up": Direction(self.down_socket, random.Random(rng.random())),
            "down": Direction(self.up_socket, random.Random(rng.random())),
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
        self.zero_ms = now_ms()  # the packet logs' clock starts here
        self.zero_epoch_ms = int(time.time() * 1000)

    def stop(self, *_: Any) -> None:
        self.running = False

    def run(self) -> None:
        readable = [self.up_socket, self.down_socket, self.control]
        directions = list(self.directions.values())
        try:
            while self.running:
                now = now_ms()
                wake = min(d.pipe.next_event() for d in directions)
                # Sleep until shortly before the next release, then poll: a VM's timer
                # wake-up is ~0.1 ms late, a poll loop over the last SPIN_MS is not.
                timeout = min(max(0.0, wake - now - SPIN_MS), 200.0) / 1000.0
                ready, _, _ = select.select(readable, [], [], timeout)
                now = now_ms()
                for sock in ready:
                    if sock is self.control:
                        self._control()
                    else:
                        self._receive(sock, now)
                now = now_ms()
                for direction in directions:
                    direction.advance(now)
        finally:
            for direction in directions:
                direction.close()
            for sock in (self.up_socket, self.down_socket, self.control):
                sock.close()
            if os.path.exists(self.control_path):
                os.unlink(self.control_path)

    def _receive(self, sock: socket.socket, now: float) -> None:
        """Take every waiting frame, each stamped with the kernel's arrival time: the delay
        then runs from when the frame reached the interface, not from when we woke up."""
        pipe = self.directions[self.sources[sock]].pipe
        realtime_to_monotonic_ms = now_ms() - time.time() * 1000.0
        dropped: list = []
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
                    stamped = seconds * 1000.0 + nanoseconds / 1e6 + realtime_to_monotonic_ms
                    arrived = min(now, stamped)
            pipe.send((arrived, max(0, len(frame) - FRAME_HEADER), frame), dropped)
            dropped.clear()

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
                    **{name: d.counters() for name, d in self.directions.items()},
                }
            direction = self.directions[message["direction"]]
            now = now_ms()
            if "layout" in message:
                layout = PipeLayout.from_dict(message["layout"])
                direction.rebuild(layout, self._log(message.get("log"), layout, now), now)
            elif "deliveries_file" in message:
                deliveries = _load_deliveries(message["deliveries_file"])
                direction.advance(now)
                direction.pipe.use_deliveries(deliveries, now)
            else:
                values = {**direction.values, **{k: message[k] for k in LIVE if k in message}}
                rate = values["rate_mbps"]
                if (rate is not None and rate < 0) or values["loss_pct"] < 0:
                    raise ValueError("rate, loss and delay must be >= 0")
                if values["delay_ms"] < 0 or values["jitter_ms"] < 0:
                    raise ValueError("rate, loss and delay must be >= 0")
                direction.set_values(values, now)
            self.updates += 1
            return {"ok": True}
        except Exception as exc:  # any malformed control message: report, keep forwarding
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _log(
        self, spec: dict[str, str] | None, layout: PipeLayout, now: float
    ) -> MahimahiLog | None:
        """A Mahimahi-format log of one direction (None: not asked for)."""
        if not spec:
            return None
        return MahimahiLog(
            spec["path"],
            spec["link_name"],
            spec["trace_name"],
            layout.queue.describe(),
            spec["command_line"],
            zero_ms=self.zero_ms,
            init_epoch_ms=self.zero_epoch_ms,
            base_ms=now,
        )


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
