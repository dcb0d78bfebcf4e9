"""Summarise event logs (from the runtime or, later, the simulator) into the metrics table.

python scripts/summarize.py results/<run>/*.jsonl [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runtime.events import read_events
from runtime.metrics import format_table, summarise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", help="JSONL event logs of one run")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    args = parser.parse_args(argv)
    missing = [log for log in args.logs if not Path(log).is_file()]
    if missing:
        print(f"summarize: error: no such log: {', '.join(missing)}", file=sys.stderr)
        return 2
    summary = summarise(read_events(*args.logs))
    if summary["requests"] == 0 and summary["failed_requests"] == 0:
        print("summarize: error: the logs hold no request events", file=sys.stderr)
        return 2
    print(json.dumps(summary) if args.json else format_table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
