"""``LinkTrace``: what a link does over time, per direction, as a piecewise-constant series.

Both directions share one list of breakpoints ``times`` (seconds, ``times[0] == 0``); piece
``i`` holds from ``times[i]`` until ``times[i + 1]`` (the last until ``duration_s``). Each
direction (``up`` = edge -> cloud, ``down`` = cloud -> edge) has, per piece, a rate (Mbit/s),
a one-way delay (ms), a jitter (ms, the standard deviation of the one-way delay) and a loss
rate (%). NaN means *unspecified*: the dataset said nothing about that quantity, and the
shaper leaves it unconstrained (a bandwidth trace has NaN delays until it is combined with
an RTT trace).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DIRECTIONS = ("up", "down")
QUANTITIES = ("rate_mbps", "delay_ms", "jitter_ms", "loss_pct")


class TraceError(ValueError):
    """A trace cannot be read or built; the message names the file (and line) when known."""


@dataclass(frozen=True)
class LinkState:
    """One direction's link at one instant."""

    rate_mbps: float
    delay_ms: float
    jitter_ms: float
    loss_pct: float


def _empty() -> dict[str, np.ndarray]:
    return {q: np.zeros(0) for q in QUANTITIES}


@dataclass
class LinkTrace:
    """A two-direction piecewise-constant link trace with its provenance."""

    times: np.ndarray
    duration_s: float
    up: dict[str, np.ndarray] = field(default_factory=_empty)
    down: dict[str, np.ndarray] = field(default_factory=_empty)
    meta: dict[str, str] = field(default_factory=dict)
    deliveries_ms: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=float)
        n = len(self.times)
        if n == 0:
            raise TraceError("a trace needs at least one piece")
        if self.times[0] != 0.0 or np.any(np.diff(self.times) <= 0):
            raise TraceError("breakpoints must start at 0 and strictly increase")
        if not self.duration_s > self.times[-1]:
            raise TraceError(f"duration {self.duration_s} s must exceed the last breakpoint")
        for name in DIRECTIONS:
            series = getattr(self, name)
            for q in QUANTITIES:
                values = np.asarray(series.get(q, np.full(n, np.nan)), dtype=float)
                if values.shape != (n,):
                    raise TraceError(f"{name} {q} has {values.size} values for {n} pieces")
                if np.any(values[~np.isnan(values)] < 0):
                    raise TraceError(f"{name} {q} holds negative values")
                series[q] = values

    # -- queries -------------------------------------------------------------------------
    @property
    def pieces(self) -> int:
        return len(self.times)

    def widths(self) -> np.ndarray:
        """Duration of every piece (s)."""
        return np.diff(np.append(self.times, self.duration_s))

    def index_at(self, t: float) -> int:
        """The piece in force at time t (clamped to the trace)."""
        return int(np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, self.pieces - 1))

    def at(self, t: float, direction: str) -> LinkState:
        series = self._series(direction)
        i = self.index_at(t)
        return LinkState(*(float(series[q][i]) for q in QUANTITIES))

    def rtt_ms(self) -> np.ndarray:
        """Round-trip time per piece: both one-way delays."""
        return self.up["delay_ms"] + self.down["delay_ms"]

    def _series(self, direction: str) -> dict[str, np.ndarray]:
        if direction not in DIRECTIONS:
            raise TraceError(f"direction must be 'up' or 'down', not {direction!r}")
        return self.up if direction == "up" else self.down

    # -- transformations -----------------------------------------------------------------
    def _with(self, times: np.ndarray, duration: float, index: np.ndarray, note: str) -> LinkTrace:
        """A new trace whose piece k takes the values of this trace's piece ``index[k]``."""
        up = {q: v[index] for q, v in self.up.items()}
        down = {q: v[index] for q, v in self.down.items()}
        meta = dict(self.meta)
        meta["derived"] = "; ".join(filter(None, [meta.get("derived"), note]))
        return LinkTrace(times, duration, up, down, meta)

    def slice(self, start: float, end: float | None = None) -> LinkTrace:
        """The part between ``start`` and ``end`` (s), re-based to start at 0."""
        end = self.duration_s if end is None else min(end, self.duration_s)
        if not 0 <= start < end:
            raise TraceError(f"bad slice {start}..{end} of a {self.duration_s} s trace")
        first = self.index_at(start)
        last = int(np.searchsorted(self.times, end, side="left"))
        index = np.arange(first, last)
        times = np.maximum(self.times[index] - start, 0.0)
        return self._with(times, end - start, index, f"slice {start:g}-{end:g} s")

    def loop(self, duration: float) -> LinkTrace:
        """Repeat the trace until it lasts ``duration`` seconds (cut there)."""
        if duration <= 0:
            raise TraceError("loop duration must be positive")
        repeats = int(np.ceil(duration / self.duration_s))
        times = np.concatenate([self.times + k * self.duration_s for k in range(repeats)])
        index = np.tile(np.arange(self.pieces), repeats)
        keep = times < duration
        return self._with(times[keep], duration, index[keep], f"looped to {duration:g} s")

    def time_scaled(self, factor: float) -> LinkTrace:
        """Stretch time by ``factor`` (2 = everything happens half as fast)."""
        if factor <= 0:
            raise TraceError("time-scale factor must be positive")
        index = np.arange(self.pieces)
        return self._with(self.times * factor, self.duration_s * factor, index, f"time x{factor:g}")

    def resampled(self, step: float) -> LinkTrace:
        """Regular pieces of ``step`` seconds, each the time-weighted mean of what it covers.

        Means of rates keep the bytes a trace can carry; NaN stays NaN only where a whole
        step is unspecified.
        """
        if step <= 0:
            raise TraceError("resample step must be positive")
        edges = np.arange(0.0, self.duration_s, step)
        bounds = np.append(edges, self.duration_s)
        starts, ends = self.times, np.append(self.times[1:], self.duration_s)
        overlap = np.clip(
            np.minimum(ends[None, :], bounds[1:, None])
            - np.maximum(starts[None, :], bounds[:-1, None]),
            0.0,
            None,
        )  # [new pieces, old pieces] seconds of overlap

        def average(values: np.ndarray) -> np.ndarray:
            known = ~np.isnan(values)
            weights = overlap * known[None, :]
            total = weights.sum(axis=1)
            sums = (weights * np.where(known, values, 0.0)[None, :]).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(total > 0, sums / np.where(total > 0, total, 1), np.nan)

        up = {q: average(v) for q, v in self.up.items()}
        down = {q: average(v) for q, v in self.down.items()}
        meta = dict(self.meta)
        meta["derived"] = "; ".join(filter(None, [meta.get("derived"), f"resampled {step:g} s"]))
        return LinkTrace(edges, self.duration_s, up, down, meta, dict(self.deliveries_ms))


def combine(bandwidth: LinkTrace, rtt: LinkTrace, up_share: float = 0.5) -> LinkTrace:
    """Rates (and loss) from ``bandwidth``, delay/jitter from ``rtt``, on the union of breakpoints.

    ``rtt``'s round trip is split into one-way delays, ``up_share`` of it uplink (symmetric by
    default); jitter is taken per direction from ``rtt``. The
    result lasts as long as ``bandwidth``; a shorter ``rtt`` trace is looped. Loss comes from
    the RTT trace where the bandwidth trace leaves it unspecified.
    """
    if not 0.0 <= up_share <= 1.0:
        raise TraceError("up_share must be in [0, 1]")
    duration = bandwidth.duration_s
    rtt = rtt.loop(duration) if rtt.duration_s < duration else rtt
    times = np.union1d(bandwidth.times, rtt.times[rtt.times < duration])
    b_index = np.searchsorted(bandwidth.times, times, side="right") - 1
    r_index = np.searchsorted(rtt.times, times, side="right") - 1
    round_trip = rtt.rtt_ms()[r_index]
    shares = {"up": up_share, "down": 1.0 - up_share}
    directions = {}
    for name in DIRECTIONS:
        b_series, r_series = getattr(bandwidth, name), getattr(rtt, name)
        loss = b_series["loss_pct"][b_index]
        loss = np.where(np.isnan(loss), r_series["loss_pct"][r_index], loss)
        directions[name] = {
            "rate_mbps": b_series["rate_mbps"][b_index],
            "delay_ms": round_trip * shares[name],
            "jitter_ms": r_series["jitter_ms"][r_index],
            "loss_pct": loss,
        }
    meta = {
        "source": f"{bandwidth.meta.get('source', '?')} + {rtt.meta.get('source', '?')}",
        "file": f"{bandwidth.meta.get('file', '?')} + {rtt.meta.get('file', '?')}",
        "licence": f"{bandwidth.meta.get('licence', '?')}; {rtt.meta.get('licence', '?')}",
        "derived": (
            f"rates from [{bandwidth.meta.get('derived', '')}]; delays from "
            f"[{rtt.meta.get('derived', '')}], RTT split {up_share:g} up"
        ),
    }
    return LinkTrace(
        times, duration, directions["up"], directions["down"], meta, dict(bandwidth.deliveries_ms)
    )
