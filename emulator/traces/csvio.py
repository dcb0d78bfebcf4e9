"""The canonical trace file: CSV with ``# key: value`` metadata lines, round-tripping exactly.

    # dsd-emu link trace v1
    # duration_s: 120.002
    # source: mahimahi
    time_s,up_rate_mbps,up_delay_ms,up_jitter_ms,up_loss_pct,down_rate_mbps,...
    0.0,1.5,,,,4.2,,,

Numbers are written with Python's shortest round-trip repr, so reading a written file gives
back exactly the same floats; an empty cell is NaN (unspecified). Metadata lines may come
anywhere: a capture writes rows as it measures and ``# duration_s:`` when it ends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import numpy as np

from emulator.traces.building import typical_step
from emulator.traces.linktrace import DIRECTIONS, QUANTITIES, LinkTrace, TraceError

MAGIC = "# dsd-emu link trace v1"
COLUMNS = ["time_s"] + [f"{d}_{q}" for d in DIRECTIONS for q in QUANTITIES]


def _cell(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def format_row(time_s: float, values: Iterable[float]) -> str:
    return ",".join([_cell(time_s), *(_cell(v) for v in values)])


def write_header(handle: TextIO, meta: dict[str, str]) -> None:
    """Metadata and the column header; ``meta`` must hold ``duration_s`` for a complete file."""
    handle.write(MAGIC + "\n")
    for key, value in meta.items():
        text = " ".join(str(value).split())
        handle.write(f"# {key}: {text}\n")
    handle.write(",".join(COLUMNS) + "\n")


def write_trace(trace: LinkTrace, path: str | Path) -> None:
    """Write the canonical CSV (atomically: a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    meta = {"duration_s": repr(float(trace.duration_s)), **trace.meta}
    with tmp.open("w", encoding="utf-8") as handle:
        write_header(handle, meta)
        for i, t in enumerate(trace.times):
            values = [getattr(trace, d)[q][i] for d in DIRECTIONS for q in QUANTITIES]
            handle.write(format_row(t, values) + "\n")
    tmp.replace(path)


def read_trace(path: str | Path) -> LinkTrace:
    """Read a canonical CSV; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != MAGIC:
        raise TraceError(f"{path}:1: not a dsd-emu link trace (first line must be '{MAGIC}')")
    meta: dict[str, str] = {}
    rows: list[list[float]] = []
    header_seen = False
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if not sep:
                raise TraceError(f"{path}:{number}: metadata lines are '# key: value'")
            meta[key.strip()] = value.strip()
            continue
        if not header_seen:
            if line.strip().split(",") != COLUMNS:
                raise TraceError(f"{path}:{number}: expected header {','.join(COLUMNS)}")
            header_seen = True
            continue
        cells = line.split(",")
        if len(cells) != len(COLUMNS):
            raise TraceError(f"{path}:{number}: expected {len(COLUMNS)} columns, got {len(cells)}")
        try:
            rows.append([float(c) if c.strip() else math.nan for c in cells])
        except ValueError as exc:
            raise TraceError(f"{path}:{number}: {exc}") from exc
    if not rows:
        raise TraceError(f"{path}: the trace has no rows")
    data = np.asarray(rows)
    if "duration_s" not in meta and len(rows) > 1:
        # A capture that was killed before writing its closing line: the last row lasts
        # one typical step. Recorded in the metadata, so the file stays honest.
        step = typical_step(data[:, 0])
        meta["duration_s"] = repr(float(data[-1, 0] + step))
        meta["note"] = "duration inferred (no closing '# duration_s:' line)"
    try:
        duration = float(meta.pop("duration_s"))
    except (KeyError, ValueError) as exc:
        raise TraceError(f"{path}: missing or bad '# duration_s:' metadata") from exc
    columns = {name: data[:, i] for i, name in enumerate(COLUMNS)}
    series = {d: {q: columns[f"{d}_{q}"] for q in QUANTITIES} for d in DIRECTIONS}
    try:
        return LinkTrace(columns["time_s"], duration, series["up"], series["down"], meta)
    except TraceError as exc:
        raise TraceError(f"{path}: {exc}") from exc
