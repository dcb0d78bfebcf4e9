"""Paired WiFi / cellular downlink traces: ``seconds,bytes_per_second`` per line, no header."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.traces.building import parse_float, rate_trace, read_text_lines, tidy_samples
from emulator.traces.linktrace import LinkTrace, TraceError

LICENCE = "no licence file in the source repository"


def import_wifi_cellular(path: str | Path, direction: str = "down") -> LinkTrace:
    times, rates = [], []
    for number, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != 2:
            raise TraceError(f"{path}:{number}: expected 'seconds,bytes_per_second'")
        times.append(parse_float(path, number, cells[0], "time"))
        rates.append(parse_float(path, number, cells[1], "bytes/s") * 8 / 1e6)
    t, rate = tidy_samples(np.asarray(times), np.asarray(rates))
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    meta = {
        "source": "wifi-cellular",
        "file": Path(path).name,
        "licence": LICENCE,
        "derived": f"{direction}link rate = bytes/s x 8, each sample held until the next",
    }
    return rate_trace(t, rate, direction, step, meta)
