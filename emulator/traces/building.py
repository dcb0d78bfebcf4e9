"""Turning raw dataset samples into ``LinkTrace``s, with one documented policy for defects.

Defect handling, the same for every importer:
- **unsorted timestamps** are sorted (stable); **duplicates** are merged by averaging;
- **gaps** (no sample for longer than the sampling step) hold the last value; a rate trace
  has the rate of the sample *before* the gap until the next sample;
- **missing values** (empty cells, ``-``) are skipped; an RTT trace holds the last measured
  value, and is NaN (unspecified) before its first one;
- **zero rates** are kept: they are outages, which the emulator reproduces and the
  statistics report as ``outage_s``;
- a file spanning **more than a day** is refused: a recorded link trace lasts minutes or
  hours, so that is a bad timestamp (and would bin into gigabytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.traces.linktrace import DIRECTIONS, LinkTrace, TraceError

LONGEST_S = 86_400.0


def tidy_samples(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by time, average duplicate timestamps, drop NaN values, re-base to t = 0."""
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    keep = ~np.isnan(values) & ~np.isnan(times)
    times, values = times[keep], values[keep]
    if times.size == 0:
        return times, values
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    unique, inverse = np.unique(times, return_inverse=True)
    if unique.size != times.size:
        sums = np.bincount(inverse, weights=values)
        values = sums / np.bincount(inverse)
        times = unique
    return times - times[0], values


def rate_trace(
    times: np.ndarray,
    rate_mbps: np.ndarray,
    direction: str,
    step_s: float,
    meta: dict[str, str],
    other_rate_mbps: np.ndarray | None = None,
) -> LinkTrace:
    """A bandwidth trace: each sample holds until the next; the last one for ``step_s``.

    ``other_rate_mbps`` (same times) fills the opposite direction when a dataset has both.
    """
    if direction not in DIRECTIONS:
        raise TraceError(f"direction must be 'up' or 'down', not {direction!r}")
    nan = np.full(len(times), np.nan)
    this = {"rate_mbps": rate_mbps, "delay_ms": nan, "jitter_ms": nan, "loss_pct": nan}
    other_rate = other_rate_mbps if other_rate_mbps is not None else nan
    other = {"rate_mbps": other_rate, "delay_ms": nan, "jitter_ms": nan, "loss_pct": nan}
    up, down = (this, other) if direction == "up" else (other, this)
    return LinkTrace(times, float(times[-1] + step_s), up, down, meta)


def rtt_trace(
    times: np.ndarray,
    rtt_ms: np.ndarray,
    bin_s: float,
    meta: dict[str, str],
    loss_pct: np.ndarray | None = None,
    jitter_ms: np.ndarray | None = None,
) -> LinkTrace:
    """An RTT trace from samples: per ``bin_s`` bin, the median RTT split evenly into one-way
    delays; jitter = the bin's RTT standard deviation / 2 (or the dataset's own, halved);
    empty bins hold the previous bin's values.
    """
    if times.size == 0:
        raise TraceError("no RTT samples")
    if times[-1] > LONGEST_S:
        raise TraceError(
            f"the samples span {times[-1] / 86400:.1f} days; a recorded link trace lasts "
            "minutes or hours (a bad timestamp?)"
        )
    bins = np.floor(times / bin_s).astype(int)
    count = int(bins[-1]) + 1
    median = np.full(count, np.nan)
    spread = np.full(count, np.nan)
    loss = np.full(count, np.nan)
    for b in np.unique(bins):
        chosen = bins == b
        median[b] = np.median(rtt_ms[chosen])
        spread[b] = np.mean(jitter_ms[chosen]) if jitter_ms is not None else np.std(rtt_ms[chosen])
        if loss_pct is not None:
            loss[b] = np.mean(loss_pct[chosen])
    median, spread, loss = (hold_last(a) for a in (median, spread, loss))
    series = {
        "rate_mbps": np.full(count, np.nan),
        "delay_ms": median / 2.0,
        "jitter_ms": spread / 2.0,
        "loss_pct": loss,
    }
    down = {k: v.copy() for k, v in series.items()}
    return LinkTrace(np.arange(count) * bin_s, count * bin_s, series, down, meta)


def hold_last(values: np.ndarray) -> np.ndarray:
    """Forward-fill NaN with the last known value (leading NaN stays NaN)."""
    out = values.copy()
    last = np.nan
    for i, v in enumerate(out):
        if np.isnan(v):
            out[i] = last
        else:
            last = v
    return out


def read_text_lines(path: str | Path) -> list[str]:
    """The file's lines; a missing, unreadable or empty file is a one-line TraceError."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read: {exc}") from exc
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise TraceError(f"{path}: the file is empty")
    return lines


def parse_float(path: str | Path, number: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{path}:{number}: {what} {text.strip()!r} is not a number") from None
    if not np.isfinite(value):
        raise TraceError(f"{path}:{number}: {what} {text.strip()!r} is not finite")
    return value


def read_two_columns(
    path: str | Path, separator: str | None, expected: str, value_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``time value`` rows (``separator`` None = whitespace), tidied as documented above."""
    times, values = [], []
    for number, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        cells = line.split(separator)
        if len(cells) != 2:
            raise TraceError(f"{path}:{number}: expected '{expected}', got {line.strip()!r}")
        times.append(parse_float(path, number, cells[0], "time"))
        values.append(parse_float(path, number, cells[1], value_name))
    return tidy_samples(np.asarray(times), np.asarray(values))


def typical_step(times: np.ndarray) -> float:
    """How long the last sample holds: the median spacing (1 s for a single sample)."""
    return float(np.median(np.diff(times))) if times.size > 1 else 1.0
