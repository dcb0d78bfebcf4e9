"""Piecewise-linear lookups between profile points (the simulator's and an emulated edge's)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def segment(axis: Sequence[float], x: float) -> tuple[int, float]:
    """Index of the grid segment used for ``x`` and the weight of its right end."""
    if len(axis) == 1:
        return 0, 0.0
    i = min(max(bisect.bisect_right(axis, x) - 1, 0), len(axis) - 2)
    return i, (x - axis[i]) / (axis[i + 1] - axis[i])


def interpolate_clamped(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear through the points, the end values beyond them."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    return interpolate(xs, ys, x)


def interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear through the points, extended linearly past both ends, never < 0."""
    i, w = segment(xs, x)
    if len(xs) == 1:
        return max(0.0, ys[0])
    return max(0.0, ys[i] + w * (ys[i + 1] - ys[i]))


def profile_points(
    points: list[dict[str, float]], key: str, value: str = "ms"
) -> tuple[list[float], list[float]]:
    """A profile's points as (xs by ``key``, ys by ``value``), sorted by x; a point without
    ``value`` (a profile from before it was measured) gives its ``ms``."""
    ordered = sorted(points, key=lambda p: p[key])
    return [p[key] for p in ordered], [p.get(value, p["ms"]) for p in ordered]
