"""Loopback DSD demo: a real target server and real edge processes over ZeroMQ on this machine.

DSD without Mininet or root: one target process (pinned to the last CPU) and N edge
processes (pinned to the first), each edge running closed-loop requests; then the metrics
table, read from the event logs.

    dsd-emu demo [--edges 2] [--requests 2] [--max-new-tokens 48] [--policy fixed:4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from itertools import chain
from pathlib import Path

from runtime.events import read_events
from runtime.metrics import format_table, summarise
from runtime.models import ModelError, load_model
from runtime.process import stop_child
from runtime.serverproc import ServerProcess


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=2, help="edge processes")
    parser.add_argument("--requests", type=int, default=2, help="requests per edge")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--policy", default="fixed:4", help="window policy of every edge")
    parser.add_argument("--target", default="smollm2", help="target model spec")
    parser.add_argument("--draft", default="int8", help="draft spec")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--out", default="results", help="parent folder of the results")
    args = parser.parse_args(argv)
    if args.edges < 1 or args.requests < 1 or args.max_new_tokens < 1:
        parser.error("--edges, --requests and --max-new-tokens must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out) / f"{datetime.now():%Y%m%d-%H%M%S}-loopback-demo"
    out.mkdir(parents=True, exist_ok=True)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, edge_cpu = str(cpus[-1]), str(cpus[0])
    try:
        target = load_model(args.target)  # converts and caches the bundled model once
    except ModelError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"demo: {target.name} target on CPU {server_cpu}, {args.edges} edge(s) with draft "
        f"'{args.draft}' on CPU {edge_cpu}; results in {out}",
        flush=True,
    )
    started = time.time()
    server_args = [
        "--model",
        args.target,
        "--threads",
        "1",
        "--cpus",
        server_cpu,
        "--max-batch",
        str(args.max_batch),
    ]
    edges: list[subprocess.Popen] = []
    try:
        with ServerProcess(server_args, out / "target.jsonl") as server:
            for index in range(args.edges):
                options = {
                    "--connect": server.endpoint,
                    "--base": args.target,
                    "--draft": args.draft,
                    "--policy": args.policy,
                    "--edge": f"edge{index}",
                    "--requests": str(args.requests),
                    "--max-new-tokens": str(args.max_new_tokens),
                    "--threads": "1",
                    "--cpus": edge_cpu,
                    "--log": str(out / f"edge{index}.jsonl"),
                }
                command = [
                    sys.executable,
                    "-m",
                    "runtime.draft",
                    *chain(*options.items()),
                    "--print",
                ]
                output = (out / f"edge{index}.txt").open("w")
                edges.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT))
            for index, edge in enumerate(edges):
                code = edge.wait()
                print(
                    f"demo: edge{index} finished (exit {code}) after {time.time() - started:.1f} s",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("demo: interrupted; logs so far are kept", file=sys.stderr)
        return 130
    finally:
        for edge in edges:
            stop_child(edge)
    logs = sorted(out.glob("*.jsonl"))
    summary = summarise(read_events(*logs))
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print()
    print(format_table(summary))
    sample = (out / "edge0.txt").read_text().strip().splitlines()
    if sample:
        print(f"\nedge0's first answer: {sample[0][:200]}")
    print(f"\nwall time {time.time() - started:.1f} s; event logs and metrics.json in {out}")
    failed = any(edge.returncode for edge in edges)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
