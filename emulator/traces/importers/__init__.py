"""One importer per recorded-dataset format; ``load_trace`` also reads the canonical CSV."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from emulator.traces.csvio import MAGIC, read_trace
from emulator.traces.importers.fivegophers import import_5gophers
from emulator.traces.importers.mahimahi import import_mahimahi
from emulator.traces.importers.mecperf import import_mecperf
from emulator.traces.importers.norway import import_norway
from emulator.traces.importers.ucc import import_ucc
from emulator.traces.importers.wificell import import_wifi_cellular
from emulator.traces.linktrace import LinkTrace, TraceError

FORMATS: dict[str, tuple[Callable[..., LinkTrace], str]] = {
    "canonical": (read_trace, "DSD-Emu's own CSV (what import_trace.py writes)"),
    "mahimahi": (import_mahimahi, "Mahimahi .up/.down packet-delivery timestamps (ms)"),
    "norway": (import_norway, "Pensieve/Norway 3G 'time_s Mbit/s'"),
    "ucc": (import_ucc, "UCC 5G CSV: DL/UL_bitrate kbit/s and sparse PING* columns"),
    "wifi-cellular": (import_wifi_cellular, "'seconds,bytes_per_second' CSV, no header"),
    "5gophers": (import_5gophers, "5Gophers rtt-all-carriers.csv or ping-trace-NN.log"),
    "mecperf": (import_mecperf, "MECPerf 'timestamp_RTTms' samples on one line"),
}


def import_trace(fmt: str, path: str | Path, **options: object) -> LinkTrace:
    """Import ``path`` in format ``fmt``; unknown formats and bad options are TraceErrors."""
    if fmt not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r}; choose one of {', '.join(FORMATS)}")
    importer = FORMATS[fmt][0]
    try:
        inspect.signature(importer).bind(path, **options)
    except TypeError:
        accepted = list(inspect.signature(importer).parameters)[1:]
        raise TraceError(
            f"format {fmt!r} takes options {accepted or 'none'}, not {sorted(options)}"
        ) from None
    return importer(path, **options)


def load_trace(spec: str) -> LinkTrace:
    """``FORMAT:PATH``, or a path: a canonical CSV, else guessed from the file's form."""
    fmt, sep, path = spec.partition(":")
    if sep and fmt in FORMATS:
        return import_trace(fmt, path)
    return import_trace(guess_format(spec), spec)


def guess_format(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline().strip()
    if first == MAGIC:
        return "canonical"
    if path.suffix in (".up", ".down"):
        return "mahimahi"
    if first.startswith("Timestamp,"):
        return "ucc"
    if first.startswith(("rtt_ms,", "protocol,network_type")):
        return "5gophers"
    if "_" in first and first[:4].isdigit() and "-" in first[:8]:
        return "mecperf"
    if "," in first:
        return "wifi-cellular"
    if len(first.split()) == 2:
        return "norway"
    raise TraceError(f"{path}: cannot tell the trace format; name it as FORMAT:{path}")
