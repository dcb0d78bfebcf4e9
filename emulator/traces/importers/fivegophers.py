"""5Gophers RTT samples: ``rtt-all-carriers.csv`` and the mmWave ``ping-trace-NN.log`` files.

Neither has timestamps: samples are placed ``interval_s`` apart in file order (1 s, ping's
default). ``select`` keeps rows whose columns match, e.g. ``{"carrier": "VERIZON"}``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from emulator.traces.building import parse_float, read_text_lines, rtt_trace
from emulator.traces.linktrace import LinkTrace, TraceError

LICENCE = "CC BY 4.0"
RTT_COLUMNS = ("rtt_ms", "rtt_in_ms")


def import_5gophers(
    path: str | Path, select: dict[str, str] | None = None, interval_s: float = 1.0
) -> LinkTrace:
    lines = read_text_lines(path)
    reader = csv.DictReader(lines)
    fields = reader.fieldnames or []
    column = next((c for c in RTT_COLUMNS if c in fields), None)
    if column is None:
        raise TraceError(f"{path}:1: no RTT column ({' or '.join(RTT_COLUMNS)}) in the header")
    select = select or {}
    unknown = sorted(set(select) - set(fields))
    if unknown:
        raise TraceError(f"{path}: cannot select on {unknown}; columns are {fields}")
    rtts = []
    for number, row in enumerate(reader, start=2):
        if None in row or any(v is None for v in row.values()):
            raise TraceError(f"{path}:{number}: expected {len(fields)} columns")
        if all(row[k] == v for k, v in select.items()):
            rtts.append(parse_float(path, number, row[column], "RTT"))
    if not rtts:
        raise TraceError(f"{path}: no rows match {select}")
    chosen = ", ".join(f"{k}={v}" for k, v in select.items()) or "all rows"
    meta = {
        "source": "5gophers",
        "file": Path(path).name,
        "licence": LICENCE,
        "derived": f"RTT samples ({chosen}) placed {interval_s:g} s apart, split evenly",
    }
    times = np.arange(len(rtts)) * interval_s
    return rtt_trace(times, np.asarray(rtts), interval_s, meta)
