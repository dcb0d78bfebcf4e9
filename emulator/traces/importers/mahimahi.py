"""Mahimahi packet-delivery traces (``.up`` / ``.down``).

Each line is a millisecond timestamp at which one 1500-byte packet may be delivered; a
repeated value means several packets in that millisecond; the file loops with a period of
its last timestamp. We keep the raw opportunities (for packet-exact replay) and bin them
into a rate series. A sibling file of the other direction (``X.up`` beside ``X.down``) fills
the other direction, looped to the same length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.traces.building import LONGEST_S, read_text_lines
from emulator.traces.linktrace import LinkTrace, TraceError

PACKET_BITS = 1500 * 8
LICENCE = "GPL-3.0 (Mahimahi repository)"
LONGEST_MS = LONGEST_S * 1000


def read_deliveries(path: str | Path) -> np.ndarray:
    """The delivery opportunities (ms), sorted; errors name the file and line."""
    values = []
    for number, line in enumerate(read_text_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit():
            raise TraceError(f"{path}:{number}: expected a millisecond timestamp, got {text!r}")
        value = int(text)
        if value > LONGEST_MS:
            raise TraceError(f"{path}:{number}: {value} ms is past a day; not a delivery time")
        values.append(value)
    deliveries = np.sort(np.asarray(values, dtype=np.int64), kind="stable")
    if deliveries[-1] <= 0:
        raise TraceError(f"{path}: the trace lasts 0 ms")
    return deliveries


def binned_rate(
    deliveries: np.ndarray, period_ms: int, duration_ms: float, bin_s: float
) -> np.ndarray:
    """Mbit/s per bin of the looped delivery opportunities over ``duration_ms``."""
    repeats = int(np.ceil(duration_ms / period_ms))
    looped = np.concatenate([deliveries + k * period_ms for k in range(repeats)])
    looped = looped[looped < duration_ms]
    edges_ms = np.append(np.arange(0.0, duration_ms, bin_s * 1000.0), duration_ms)
    counts, _ = np.histogram(looped, bins=edges_ms)
    widths_s = np.diff(edges_ms) / 1000.0
    return counts * PACKET_BITS / widths_s / 1e6


def import_mahimahi(
    path: str | Path, bin_s: float = 1.0, direction: str | None = None
) -> LinkTrace:
    path = Path(path)
    if bin_s <= 0:
        raise TraceError("bin must be positive")
    direction = direction or {".up": "up", ".down": "down"}.get(path.suffix)
    if direction is None:
        raise TraceError(f"{path}: cannot tell the direction from the name; pass --direction")
    other = "down" if direction == "up" else "up"
    deliveries = {direction: read_deliveries(path)}
    sibling = path.with_suffix("." + other)
    if sibling.is_file():
        deliveries[other] = read_deliveries(sibling)
    period_ms = int(deliveries[direction][-1])
    duration_ms = float(period_ms)
    times = np.arange(0.0, duration_ms / 1000.0, bin_s)
    series = {}
    for name in ("up", "down"):
        rate = np.full(len(times), np.nan)
        if name in deliveries:
            rate = binned_rate(deliveries[name], int(deliveries[name][-1]), duration_ms, bin_s)
        nan = np.full(len(times), np.nan)
        series[name] = {"rate_mbps": rate, "delay_ms": nan, "jitter_ms": nan, "loss_pct": nan}
    files = " + ".join(sorted(f.name for f in [path, sibling] if f.is_file()))
    meta = {
        "source": "mahimahi",
        "file": files,
        "licence": LICENCE,
        "derived": f"rate = delivery opportunities x 1500 B per {bin_s:g} s bin; loops every "
        f"{period_ms} ms",
    }
    return LinkTrace(times, duration_ms / 1000.0, series["up"], series["down"], meta, deliveries)
