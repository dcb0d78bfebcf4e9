"""MECPerf RTT traces: one line of ``YYYY-MM-DD hh:mm:ss.ffffff_RTTms`` samples, in bursts.

The observer is at the network edge (MEC) or in the cloud (``_Client_edge_`` /
``_Client_cloud_`` in the file name).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from emulator.traces.building import parse_float, read_text_lines, rtt_trace, tidy_samples
from emulator.traces.linktrace import LinkTrace, TraceError

LICENCE = "see README.orig.md of the MECPerf source"


def import_mecperf(path: str | Path, bin_s: float = 0.1) -> LinkTrace:
    times: list[float] = []
    rtts: list[float] = []
    for number, line in enumerate(read_text_lines(path), start=1):
        for sample in filter(None, (s.strip() for s in line.split(","))):
            stamp, sep, rtt = sample.rpartition("_")
            try:
                when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                raise TraceError(
                    f"{path}:{number}: bad sample {sample!r} (expected 'YYYY-MM-DD hh:mm:ss.f_RTT')"
                ) from None
            if not sep:
                raise TraceError(f"{path}:{number}: bad sample {sample!r}")
            value = parse_float(path, number, rtt, "RTT")
            times.append(when)
            rtts.append(value)
    t, rtt_ms = tidy_samples(np.asarray(times), np.asarray(rtts))
    observer = "edge" if "_edge_" in Path(path).name else "cloud"
    meta = {
        "source": "mecperf",
        "file": Path(path).name,
        "licence": LICENCE,
        "derived": f"RTT to the {observer} observer, median per {bin_s:g} s bin, split evenly",
    }
    return rtt_trace(t, rtt_ms, bin_s, meta)
