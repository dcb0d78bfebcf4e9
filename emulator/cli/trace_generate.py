"""Generate a seeded synthetic link trace (canonical CSV) from a profile: lte, wifi or 5g.

python scripts/generate_trace.py lte --duration 300 --seed 1 -o traces/lte-like.csv
"""

from __future__ import annotations

import argparse
import sys

from emulator.traces.csvio import write_trace
from emulator.traces.generator import PROFILES, generate
from emulator.traces.linktrace import TraceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--step", type=float, default=1.0, help="piece length in s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True, help="canonical CSV to write")
    args = parser.parse_args(argv)
    try:
        trace = generate(args.profile, args.duration, args.step, args.seed)
        write_trace(trace, args.output)
    except (TraceError, OSError) as exc:
        print(f"generate_trace: error: {exc}", file=sys.stderr)
        return 2
    print(f"generate_trace: wrote {args.output} ({trace.pieces} pieces, {trace.duration_s:g} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
