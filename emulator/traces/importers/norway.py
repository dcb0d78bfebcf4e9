"""Norway 3G/HSDPA traces as cooked by the Pensieve authors: ``time_s  Mbit/s`` per line."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.traces.building import parse_float, rate_trace, read_text_lines, tidy_samples
from emulator.traces.linktrace import LinkTrace, TraceError

LICENCE = "MIT (bundle 'Real-world-bandwidth-traces')"


def import_norway(path: str | Path, direction: str = "down") -> LinkTrace:
    times, rates = [], []
    for number, line in enumerate(read_text_lines(path), start=1):
        cells = line.split()
        if not cells:
            continue
        if len(cells) != 2:
            raise TraceError(f"{path}:{number}: expected 'time_s Mbit/s', got {line.strip()!r}")
        times.append(parse_float(path, number, cells[0], "time"))
        rates.append(parse_float(path, number, cells[1], "rate"))
    t, rate = tidy_samples(np.asarray(times), np.asarray(rates))
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    meta = {
        "source": "norway-3g",
        "file": Path(path).name,
        "licence": LICENCE,
        "derived": f"{direction}link rate, each sample held until the next",
    }
    return rate_trace(t, rate, direction, step, meta)
