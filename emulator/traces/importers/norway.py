"""Norway 3G/HSDPA traces as cooked by the Pensieve authors: ``time_s  Mbit/s`` per line."""

from __future__ import annotations

from pathlib import Path

from emulator.traces.building import rate_trace, read_two_columns, typical_step
from emulator.traces.linktrace import LinkTrace

LICENCE = "MIT (bundle 'Real-world-bandwidth-traces')"


def import_norway(path: str | Path, direction: str = "down") -> LinkTrace:
    times, rate = read_two_columns(path, None, "time_s Mbit/s", "rate")
    meta = {
        "source": "norway-3g",
        "file": Path(path).name,
        "licence": LICENCE,
        "derived": f"{direction}link rate, each sample held until the next",
    }
    return rate_trace(times, rate, direction, typical_step(times), meta)
