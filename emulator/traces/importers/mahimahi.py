"""Mahimahi packet-delivery traces (``.up`` / ``.down``).

Each line is a millisecond timestamp at which one 1500-byte packet may be delivered; a
repeated value means several packets in that millisecond; the file loops with a period of
its last timestamp. We keep the raw opportunities (for packet-exact replay) and bin them
into a rate series. A sibling file of the other direction (``X.up`` beside ``X.down``) fills
the other direction, looped to the same length.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    """One file, its direction from its suffix (``.up`` / ``.down``) or ``direction``; a
    sibling file of the other direction fills that one."""
    path = Path(path)
    direction = direction or {".up": "up", ".down": "down"}.get(path.suffix)
    if direction is None:
        raise TraceError(f"{path}: cannot tell the direction from the name; pass --direction")
    other = "down" if direction == "up" else "up"
    files = {direction: path}
    sibling = path.with_suffix("." + other)
    if sibling.is_file():
        files[other] = sibling
    return mahimahi_link(files, bin_s, period_of=direction)


def mahimahi_link(
    files: Mapping[str, str | Path], bin_s: float = 1.0, period_of: str | None = None
) -> LinkTrace:
    """A link from a delivery file per direction (``{"up": X, "down": Y}``, either may be
    missing), each direction's opportunities kept for packet-exact replay and binned into
    its rate; the trace lasts ``period_of``'s period (default: the longest), the other
    direction looped to it."""
    if bin_s <= 0:
        raise TraceError("bin must be positive")
    deliveries = {direction: read_deliveries(path) for direction, path in files.items()}
    periods = {direction: int(values[-1]) for direction, values in deliveries.items()}
    period_ms = periods[period_of] if period_of else max(periods.values())
    duration_ms = float(period_ms)
    times = np.arange(0.0, duration_ms / 1000.0, bin_s)
    series = {}
    for name in ("up", "down"):
        rate = np.full(len(times), np.nan)
        if name in deliveries:
            rate = binned_rate(deliveries[name], periods[name], duration_ms, bin_s)
        nan = np.full(len(times), np.nan)
        series[name] = {"rate_mbps": rate, "delay_ms": nan, "jitter_ms": nan, "loss_pct": nan}
    names = " + ".join(sorted({Path(f).name for f in files.values()}))
    meta = {
        "source": "mahimahi",
        "file": names,
        "licence": LICENCE,
        "derived": f"rate = delivery opportunities x 1500 B per {bin_s:g} s bin; loops every "
        f"{period_ms} ms",
    }
    return LinkTrace(times, duration_ms / 1000.0, series["up"], series["down"], meta, deliveries)
