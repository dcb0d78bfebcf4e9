"""Statistics of a link trace (any importable format, or a canonical CSV), and a plot.

    python scripts/trace_stats.py TRACE [--json] [--plot OUT.png]

TRACE is a path (the format is recognised) or FORMAT:PATH. With ``--json`` the last line is
one JSON object with duration_s, up/down_mbps_mean, rtt_ms_mean, rtt_ms_p95, outage_s, ...
"""

from __future__ import annotations

import argparse
import json
import sys

from emulator.traces.importers import load_trace
from emulator.traces.linktrace import TraceError
from emulator.traces.stats import plot_trace, summarise_trace


def show(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", help="trace file, or FORMAT:PATH")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", metavar="OUT.png", help="write rate and RTT over time")
    args = parser.parse_args(argv)
    try:
        trace = load_trace(args.trace)
        summary = summarise_trace(trace)
        if args.plot:
            plot_trace(trace, args.plot)
    except (TraceError, ValueError, OSError) as exc:
        print(f"trace_stats: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
        return 0
    for key, value in summary.items():
        if key != "meta":
            print(f"{key:<20} {show(value)}")
    for key, value in summary["meta"].items():
        print(f"{key:<20} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
