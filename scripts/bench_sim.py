"""Benchmark DSD-Sim: how fast it simulates many edges, on one core.

    python scripts/bench_sim.py --edges 1000 --tokens 128 --json
    python scripts/bench_sim.py --edges 10000 --tokens 128 --targets 4 --json  # and a router
    python scripts/bench_sim.py --sweep --json          # 10, 100, 1,000, 10,000 edges
    python scripts/bench_sim.py --compare-simpy         # the event engine against SimPy

Each edge serves one request of ``--tokens`` tokens in the default scenario (its traces,
its cloud); the events are written to a temporary log as ``simulate.py`` writes them.
Targets: 1,000 edges in <= 3 s wall, 10,000 in <= 30 s. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from emulator.scenario import Overrides, absolute_traces, load_scenario
from emulator.sim.engine import Engine
from emulator.sim.simulation import Simulation
from emulator.sim.window_policies import simulated_window_policy
from runtime.arguments import policy_spec_type
from runtime.events import EventLog

ROOT = Path(__file__).resolve().parents[1]
SWEEP = (10, 100, 1000, 10000)
TARGETS_S = {1000: 3.0, 10000: 30.0}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_one(
    scenario_path: str, edges: int, tokens: int, policy: str | None, targets: int = 1
) -> dict[str, Any]:
    baseline = peak_rss_mb()
    with tempfile.TemporaryDirectory() as folder:
        overrides = Overrides(
            edges=edges, policy=policy, requests_per_edge=1, max_new_tokens=tokens
        )
        path = with_targets(Path(scenario_path), targets, Path(folder))
        scenario = load_scenario(path, overrides)
        log = EventLog(Path(folder) / "events.jsonl", "sim", flush_each=False)
        started = time.perf_counter()
        simulation = Simulation(scenario, log)
        built = time.perf_counter()
        result = simulation.run()
        finished = time.perf_counter()
        log.close()
        log_mb = (Path(folder) / "events.jsonl").stat().st_size / 1e6
    wall = finished - started
    return {
        "edges": edges,
        "tokens": tokens,
        "wall_s": wall,
        "build_s": built - started,
        "rounds": result.rounds,
        "events": result.events,
        "rounds_per_s": result.rounds / wall,
        "events_per_s": result.events / wall,
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": baseline,
        "event_log_mb": log_mb,
        "simulated_s": result.simulated_s,
        "requests_done": result.requests_done,
        "targets": targets,
        "target_wall_s": TARGETS_S.get(edges),
        "cpu": sorted(os.sched_getaffinity(0)),
    }


def with_targets(path: Path, targets: int, folder: Path) -> Path:
    """The scenario with ``targets`` replicas of its target behind its router (each on a
    share of one core), written beside ``folder``; itself for one."""
    if targets == 1:
        return path
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    cloud = raw.setdefault("cloud", {})
    cloud["targets"], cloud["cpu"] = targets, min(1.0, float(cloud.get("cpu", 1.0)))
    written = folder / path.name
    written.write_text(yaml.safe_dump(absolute_traces(raw, path.parent)), encoding="utf-8")
    return written


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Each size in a fresh process, so that its peak memory is its own."""
    runs = []
    for edges in SWEEP:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--edges",
            str(edges),
            "--tokens",
            str(args.tokens),
            "--scenario",
            args.scenario,
            "--targets",
            str(args.targets),
            "--json",
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        runs.append(json.loads(output.stdout.strip().splitlines()[-1]))
        run = runs[-1]
        print(
            f"{edges:>6} edges: {run['wall_s']:7.2f} s wall, {run['rounds']:>8} rounds, "
            f"{run['events_per_s']:>9.0f} events/s, peak RSS {run['peak_rss_mb']:.0f} MB",
            file=sys.stderr,
        )
    first, last = runs[0], runs[-1]
    scale = last["edges"] / first["edges"]
    return {
        "runs": runs,
        "wall_growth": last["wall_s"] / first["wall_s"],
        "edges_growth": scale,
        "rss_growth_mb": last["peak_rss_mb"] - first["peak_rss_mb"],
        "targets_met": all(
            r["wall_s"] <= r["target_wall_s"] for r in runs if r["target_wall_s"] is not None
        ),
    }


def compare_simpy(processes: int = 1000, steps: int = 200) -> dict[str, Any]:
    """The same bare workload (processes each waiting ``steps`` random delays) on this
    project's heap engine and on SimPy: events per second of each."""
    try:
        import simpy
    except ImportError:
        return {"simpy": "not installed (pip install simpy, or pip install -e .[bench])"}
    rng = random.Random(1)
    delays = [rng.expovariate(1.0) for _ in range(steps)]

    engine = Engine()

    def step(state: list[int]) -> None:
        if state[0] < steps:
            state[0] += 1
            engine.at(engine.now + delays[state[0] - 1], step, state)

    for _ in range(processes):
        engine.at(0.0, step, [0])
    started = time.perf_counter()
    engine.run()
    heap_s = time.perf_counter() - started

    environment = simpy.Environment()

    def process():
        for delay in delays:
            yield environment.timeout(delay)

    for _ in range(processes):
        environment.process(process())
    started = time.perf_counter()
    environment.run()
    simpy_s = time.perf_counter() - started
    events = processes * steps
    return {
        "events": events,
        "heap_events_per_s": events / heap_s,
        "simpy_events_per_s": events / simpy_s,
        "heap_speedup": simpy_s / heap_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request")
    parser.add_argument(
        "--policy",
        type=policy_spec_type(simulated_window_policy),
        help="window policy of every edge (default: the scenario's)",
    )
    parser.add_argument("--scenario", default=str(ROOT / "topologies" / "default.yaml"))
    parser.add_argument(
        "--targets", type=int, default=1, help="target replicas behind the scenario's router"
    )
    parser.add_argument("--sweep", action="store_true", help=f"run {SWEEP} edges")
    parser.add_argument("--compare-simpy", action="store_true", help="engine vs SimPy")
    parser.add_argument("--json", action="store_true", help="only the JSON line on stdout")
    parser.add_argument(
        "--target-wall-s",
        type=float,
        help=f"the wall time a run must stay within (default: {TARGETS_S} by edges)",
    )
    args = parser.parse_args(argv)
    if args.edges < 1 or args.tokens < 1 or not 1 <= args.targets <= 64:
        parser.error("--edges and --tokens must be >= 1, --targets in 1..64")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the targets are for one core
    if args.compare_simpy:
        result = compare_simpy()
    elif args.sweep:
        result = sweep(args)
    else:
        result = bench_one(args.scenario, args.edges, args.tokens, args.policy, args.targets)
        if args.target_wall_s is not None:
            result["target_wall_s"] = args.target_wall_s
        target = result["target_wall_s"]
        result["targets_met"] = target is None or result["wall_s"] <= target
        if not args.json:
            for key, value in result.items():
                print(f"{key:>16}: {value}")
    print(json.dumps(result))
    return 0 if result.get("targets_met", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
