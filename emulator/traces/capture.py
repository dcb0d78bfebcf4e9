"""Record a ``LinkTrace`` from a live path: a probe server and a client over ZeroMQ/TCP.

Every interval the client measures, in this order so that bulk traffic never inflates the
RTT it reports:
1. **RTT**: ``pings`` small messages at a fixed cadence, echoed by the server; the median
   RTT split evenly into one-way delays, jitter = RTT std / 2, loss = unanswered pings (%);
2. **uplink rate**: a bulk transfer to the server, timed by the server from its chunks'
   arrivals (one clock, no synchronisation needed; see ``arrival_rate``);
3. **downlink rate**: the same from the server, timed by the client.
Rates are TCP goodput scaled to the wire (x MTU/MSS, 1500/1448 by default), so a shaper
set to the recorded rate lets the same goodput through. Each interval is written to the
canonical CSV as soon as it is measured; the closing ``# duration_s:`` line comes at the end.

The probe protocol is msgpack maps: ``ping``/``pong`` {seq}; ``up`` {burst, last, data}
-> ``up_done`` {burst, bytes_per_s}; ``down`` {burst, bytes, chunk} -> ``data``
{burst, last, data}. Anything else gets an ``error`` and the server keeps serving.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import msgpack
import numpy as np
import zmq

from emulator.traces.csvio import format_row, read_trace, write_header
from emulator.traces.linktrace import LinkTrace

MAX_CHUNK = 1 << 20
MAX_MESSAGE = MAX_CHUNK + 1024
MAX_BURST = 64 << 20


def arrival_rate(arrivals: list[tuple[float, int]]) -> float:
    """Bytes per second of a burst from its chunks' (arrival time, size), NaN if too short.

    The slope of bytes received against time over the last three quarters of the chunks:
    robust to a late first timestamp (a receiver waking up) and to the ramp-up of TCP and
    of the shaper's initial burst, which the first quarter absorbs.
    """
    if len(arrivals) < 3:
        return math.nan
    times = np.array([t for t, _ in arrivals])
    received = np.cumsum([size for _, size in arrivals], dtype=float)
    start = len(arrivals) // 4
    if times[-1] <= times[start]:
        return math.nan
    return float(np.polyfit(times[start:], received[start:], 1)[0])


def _pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def _unpack(frame: bytes) -> dict[str, Any] | None:
    try:
        message = msgpack.unpackb(frame, raw=False)
    except Exception:  # corrupt input of any kind: the caller answers or drops it
        return None
    return message if isinstance(message, dict) and isinstance(message.get("type"), str) else None


class ProbeServer:
    """Echoes pings, times uplink bursts, sends downlink bursts. ``serve`` blocks until ``stop``."""

    def __init__(self, bind: str, context: zmq.Context | None = None) -> None:
        self.socket = (context or zmq.Context.instance()).socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self.socket.setsockopt(zmq.SNDHWM, 0)  # a burst is bounded (MAX_BURST); never drop
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(bind)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.running = True
        self.bursts: dict[tuple[bytes, int], list[tuple[float, int]]] = {}

    def stop(self) -> None:
        self.running = False

    def serve(self) -> None:
        try:
            while self.running:
                if self.socket.poll(100):
                    identity, *frames = self.socket.recv_multipart()
                    self._handle(identity, frames)
        finally:
            self.socket.close(0)

    def _send(self, identity: bytes, message: dict[str, Any]) -> None:
        self.socket.send_multipart([identity, _pack(message)])

    def _handle(self, identity: bytes, frames: list[bytes]) -> None:
        message = _unpack(frames[0]) if len(frames) == 1 else None
        kind = message.get("type") if message else None
        try:
            if kind == "ping":
                self._send(identity, {"type": "pong", "seq": int(message["seq"])})
            elif kind == "up":
                self._uplink_chunk(identity, message)
            elif kind == "down":
                self._downlink_burst(identity, message)
            else:
                self._send(identity, {"type": "error", "message": "unknown or malformed message"})
        except (KeyError, TypeError, ValueError) as exc:
            self._send(identity, {"type": "error", "message": f"bad {kind}: {exc}"})

    def _uplink_chunk(self, identity: bytes, message: dict[str, Any]) -> None:
        key = (identity, int(message["burst"]))
        arrivals = self.bursts.setdefault(key, [])
        arrivals.append((time.perf_counter(), len(message["data"])))
        if message["last"]:
            del self.bursts[key]
            self._send(
                identity,
                {"type": "up_done", "burst": key[1], "bytes_per_s": arrival_rate(arrivals)},
            )
        if len(self.bursts) > 64:  # abandoned bursts (a client gone mid-transfer)
            self.bursts.pop(next(iter(self.bursts)))

    def _downlink_burst(self, identity: bytes, message: dict[str, Any]) -> None:
        total = int(message["bytes"])
        chunk = int(message["chunk"])
        if not (0 < chunk <= MAX_CHUNK and 0 < total <= MAX_BURST):
            raise ValueError(f"chunk must be 1..{MAX_CHUNK}, bytes 1..{MAX_BURST}")
        payload = bytes(chunk)
        count = max(1, math.ceil(total / chunk))
        for index in range(count):
            self._send(
                identity,
                {
                    "type": "data",
                    "burst": int(message["burst"]),
                    "last": index == count - 1,
                    "data": payload,
                },
            )


@dataclass
class CaptureSettings:
    interval_s: float = 1.0
    pings: int = 5
    ping_spacing_s: float = 0.02
    ping_timeout_s: float = 1.0
    bulk_fraction: float = 0.25
    chunk_bytes: int = 64 * 1024
    mtu: int = 1500
    mss: int = 1448


class ProbeClient:
    """Measures one path each interval and appends the result to a canonical CSV."""

    def __init__(
        self,
        connect: str,
        settings: CaptureSettings | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.settings = settings or CaptureSettings()
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self.socket.setsockopt(zmq.SNDHWM, 0)  # never block mid-burst during an outage
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(connect)
        self.burst = 0
        self.seq = 0
        self.estimate_mbps = {"up": 8.0, "down": 8.0}

    def close(self) -> None:
        self.socket.close(0)

    def _recv(self, deadline: float) -> dict[str, Any] | None:
        remaining_ms = (deadline - time.perf_counter()) * 1000.0
        if remaining_ms <= 0 or not self.socket.poll(remaining_ms):
            return None
        return _unpack(self.socket.recv())

    def measure_rtt(self) -> tuple[float, float, float]:
        """(median RTT ms, RTT std ms, loss %) from ``pings`` echoes."""
        s = self.settings
        sent: dict[int, float] = {}
        rtts: list[float] = []
        for index in range(s.pings):
            self.seq += 1
            sent[self.seq] = time.perf_counter()
            self.socket.send(_pack({"type": "ping", "seq": self.seq}))
            pause_until = time.perf_counter() + (s.ping_spacing_s if index < s.pings - 1 else 0)
            self._collect_pongs(sent, rtts, pause_until)
        self._collect_pongs(sent, rtts, time.perf_counter() + s.ping_timeout_s, until_all=True)
        loss = 100.0 * (s.pings - len(rtts)) / s.pings
        if not rtts:
            return math.nan, math.nan, loss
        return float(np.median(rtts)), float(np.std(rtts)), loss

    def _collect_pongs(
        self, sent: dict[int, float], rtts: list[float], deadline: float, until_all: bool = False
    ) -> None:
        while time.perf_counter() < deadline and not (until_all and len(rtts) == len(sent)):
            message = self._recv(deadline)
            if message is None:
                continue
            if message.get("type") == "pong" and message.get("seq") in sent:
                rtts.append((time.perf_counter() - sent[message["seq"]]) * 1000.0)

    def _burst_bytes(self, direction: str) -> int:
        s = self.settings
        target = self.estimate_mbps[direction] * 1e6 / 8 * s.interval_s * s.bulk_fraction
        return int(min(max(target, 4 * s.chunk_bytes), MAX_BURST))

    def _wire_mbps(self, payload_bytes_per_s: float) -> float:
        return payload_bytes_per_s * 8 / 1e6 * self.settings.mtu / self.settings.mss

    def measure_up(self, timeout_s: float) -> float:
        """Uplink rate (Mbit/s, wire), timed by the server; 0 when nothing got through."""
        s = self.settings
        self.burst += 1
        total = self._burst_bytes("up")
        count = max(2, math.ceil(total / s.chunk_bytes))
        payload = bytes(s.chunk_bytes)
        for index in range(count):
            self.socket.send(
                _pack(
                    {"type": "up", "burst": self.burst, "last": index == count - 1, "data": payload}
                )
            )
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            message = self._recv(deadline)
            if message and message.get("type") == "up_done" and message.get("burst") == self.burst:
                rate = self._wire_mbps(float(message["bytes_per_s"]))
                if not math.isnan(rate):
                    self.estimate_mbps["up"] = rate
                return rate
        self.estimate_mbps["up"] = max(self.estimate_mbps["up"] / 4, 0.1)
        return 0.0

    def measure_down(self, timeout_s: float) -> float:
        """Downlink rate (Mbit/s, wire), timed here from the chunks' arrivals."""
        s = self.settings
        self.burst += 1
        total = self._burst_bytes("down")
        self.socket.send(
            _pack({"type": "down", "burst": self.burst, "bytes": total, "chunk": s.chunk_bytes})
        )
        deadline = time.perf_counter() + timeout_s
        arrivals: list[tuple[float, int]] = []
        while time.perf_counter() < deadline:
            message = self._recv(deadline)
            if not message or message.get("type") != "data" or message.get("burst") != self.burst:
                continue
            arrivals.append((time.perf_counter(), len(message["data"])))
            if message.get("last"):
                break
        if not arrivals:
            self.estimate_mbps["down"] = max(self.estimate_mbps["down"] / 4, 0.1)
            return 0.0
        rate = self._wire_mbps(arrival_rate(arrivals))
        if not math.isnan(rate):
            self.estimate_mbps["down"] = rate
        return rate

    def capture(
        self, duration_s: float, out: Path, meta: dict[str, str], progress: bool = False
    ) -> LinkTrace:
        """Measure for ``duration_s``, writing each interval to ``out`` as it goes."""
        s = self.settings
        start = time.perf_counter()
        with out.open("w", encoding="utf-8") as handle:
            write_header(handle, meta)
            try:
                next_start = start
                while next_start - start < duration_s - 1e-9:
                    self._measure_interval(handle, next_start - start, progress)
                    next_start += s.interval_s
                    time.sleep(max(0.0, next_start - time.perf_counter()))
            finally:
                elapsed = max(time.perf_counter() - start, s.interval_s)
                handle.write(f"# duration_s: {elapsed!r}\n")
        return read_trace(out)

    def _measure_interval(self, handle: TextIO, t: float, progress: bool) -> None:
        s = self.settings
        rtt, rtt_std, loss = self.measure_rtt()
        timeout = max(2.0 * s.interval_s, 1.0)
        up = self.measure_up(timeout)
        down = self.measure_down(timeout)
        delay, jitter = rtt / 2, rtt_std / 2
        handle.write(format_row(t, [up, delay, jitter, loss, down, delay, jitter, loss]) + "\n")
        handle.flush()
        if progress:
            print(
                f"t={t:7.1f} s  RTT {rtt:8.2f} ms  up {up:8.2f} Mbit/s  down {down:8.2f} "
                f"Mbit/s  loss {loss:5.1f} %",
                flush=True,
            )
