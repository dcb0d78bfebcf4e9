"""UCC 5G production-network traces (Raca et al., MMSys 2020): one CSV row per second.

``DL_bitrate``/``UL_bitrate`` are kbit/s; ``PINGAVG``/``PINGSTDEV`` (ms) and ``PINGLOSS``
(%) are sparse, ``-`` where no ping ran that second: they give delay, jitter and loss, held
from one ping to the next (NaN before the first).
"""

from __future__ import annotations

import csv
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

from emulator.traces.building import hold_last, parse_float, read_text_lines, typical_step
from emulator.traces.linktrace import LinkTrace, TraceError

LICENCE = "GPL-3.0 (dataset repository)"
REQUIRED = ("Timestamp", "DL_bitrate", "UL_bitrate")
MISSING = ("", "-")


def _optional(path: str | Path, number: int, text: str | None, what: str) -> float:
    if text is None or text.strip() in MISSING:
        return np.nan
    return parse_float(path, number, text, what)


def import_ucc(path: str | Path) -> LinkTrace:
    reader = csv.DictReader(read_text_lines(path))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise TraceError(f"{path}:1: missing columns {missing}")
    rows: dict[float, list[list[float]]] = {}
    for number, row in enumerate(reader, start=2):
        try:
            when = datetime.strptime(row["Timestamp"], "%Y.%m.%d_%H.%M.%S").timestamp()
        except (TypeError, ValueError):
            raise TraceError(
                f"{path}:{number}: bad Timestamp {row['Timestamp']!r} (YYYY.MM.DD_hh.mm.ss)"
            ) from None
        values = [
            _optional(path, number, row["DL_bitrate"], "DL_bitrate") / 1000.0,
            _optional(path, number, row["UL_bitrate"], "UL_bitrate") / 1000.0,
            _optional(path, number, row.get("PINGAVG"), "PINGAVG"),
            _optional(path, number, row.get("PINGSTDEV"), "PINGSTDEV"),
            _optional(path, number, row.get("PINGLOSS"), "PINGLOSS"),
        ]
        rows.setdefault(when, []).append(values)
    if not rows:
        raise TraceError(f"{path}: no data rows")
    stamps = np.asarray(sorted(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns stay NaN
        merged = np.asarray([np.nanmean(np.asarray(rows[s]), axis=0) for s in stamps])
    down_rate, up_rate, rtt, rtt_std, loss = (hold_last(merged[:, i]) for i in range(5))
    times = stamps - stamps[0]
    step = typical_step(times)

    def direction(rate: np.ndarray) -> dict[str, np.ndarray]:
        return {"rate_mbps": rate, "delay_ms": rtt / 2, "jitter_ms": rtt_std / 2, "loss_pct": loss}

    meta = {
        "source": "ucc-5g",
        "file": Path(path).name,
        "licence": LICENCE,
        "derived": "rates = UL/DL_bitrate kbit/s / 1000; delay = PINGAVG / 2, jitter = "
        "PINGSTDEV / 2, loss = PINGLOSS, held between pings; duplicate seconds averaged",
    }
    return LinkTrace(times, float(times[-1] + step), direction(up_rate), direction(down_rate), meta)
