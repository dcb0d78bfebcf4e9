"""Paired WiFi / cellular downlink traces: ``seconds,bytes_per_second`` per line, no header."""

from __future__ import annotations

from pathlib import Path

from emulator.traces.building import rate_trace, read_two_columns, typical_step
from emulator.traces.linktrace import LinkTrace

LICENCE = "no licence file in the source repository"


def import_wifi_cellular(path: str | Path, direction: str = "down") -> LinkTrace:
    times, bytes_per_s = read_two_columns(path, ",", "seconds,bytes_per_second", "bytes/s")
    meta = {
        "source": "wifi-cellular",
        "file": Path(path).name,
        "licence": LICENCE,
        "derived": f"{direction}link rate = bytes/s x 8, each sample held until the next",
    }
    return rate_trace(times, bytes_per_s * 8 / 1e6, direction, typical_step(times), meta)
