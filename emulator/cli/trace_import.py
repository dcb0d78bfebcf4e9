"""Import a recorded network trace into DSD-Emu's canonical CSV.

    python scripts/import_trace.py mahimahi ATT-LTE-driving-2016.down \\
        --rtt mecperf:lte-TCPRTT-noise0M_Client_cloud_trace0.txt -o att-lte.csv

Formats: canonical, mahimahi, norway, ucc, wifi-cellular, 5gophers, mecperf. A bandwidth
trace usually needs an RTT trace beside it (``--rtt``): rates come from the first, delays
from the second, its round trip split into one-way delays (``--up-share``).
"""

from __future__ import annotations

import argparse
import sys

from emulator.traces.csvio import write_trace
from emulator.traces.importers import FORMATS, import_trace, load_trace
from emulator.traces.linktrace import TraceError, combine


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    formats = "\n".join(f"  {name:<14} {text}" for name, (_, text) in FORMATS.items())
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="formats:\n" + formats,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("format", help="format of INPUT (see below)")
    parser.add_argument("input", help="the recorded trace file")
    parser.add_argument("-o", "--output", required=True, help="canonical CSV to write")
    parser.add_argument("--rtt", metavar="FORMAT:FILE", help="take delays from this RTT trace")
    parser.add_argument(
        "--up-share",
        type=float,
        default=0.5,
        help="share of the RTT given to the uplink (default 0.5)",
    )
    parser.add_argument("--bin", type=float, help="bin width in s (mahimahi, mecperf)")
    parser.add_argument(
        "--direction", choices=("up", "down"), help="direction of a one-direction rate trace"
    )
    parser.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="keep matching rows (5gophers), e.g. carrier=VERIZON",
    )
    parser.add_argument("--interval", type=float, help="seconds between samples (5gophers)")
    parser.add_argument("--slice", metavar="START:END", help="keep this part (s)")
    parser.add_argument("--loop", type=float, metavar="SECONDS", help="repeat to this length")
    parser.add_argument("--resample", type=float, metavar="SECONDS", help="regular steps")
    return parser.parse_args(argv)


def importer_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    if args.bin is not None:
        options["bin_s"] = args.bin
    if args.direction:
        options["direction"] = args.direction
    if args.interval is not None:
        options["interval_s"] = args.interval
    if args.select:
        pairs = [item.partition("=") for item in args.select]
        if any(not sep for _, sep, _ in pairs):
            raise TraceError("--select takes COLUMN=VALUE")
        options["select"] = {key: value for key, _, value in pairs}
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        trace = import_trace(args.format, args.input, **importer_options(args))
        if args.rtt:
            trace = combine(trace, load_trace(args.rtt), args.up_share)
        if args.slice:
            start, _, end = args.slice.partition(":")
            trace = trace.slice(float(start or 0), float(end) if end else None)
        if args.loop:
            trace = trace.loop(args.loop)
        if args.resample:
            trace = trace.resampled(args.resample)
        write_trace(trace, args.output)
    except (TraceError, ValueError, OSError) as exc:
        print(f"import_trace: error: {exc}", file=sys.stderr)
        return 2
    print(f"import_trace: wrote {args.output} ({trace.pieces} pieces, {trace.duration_s:g} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
