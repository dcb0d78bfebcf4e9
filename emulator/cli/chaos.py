"""Chaos: the faults DSD-Emu must survive, made for real, each outcome checked.

    sudo python scripts/chaos.py [--json] [--only FAULT ...] [--seed N] [--out DIR]

Processes are killed by their PID (a drafter mid-request; the target, then restarted on
its port), a request runs past its deadline, 10,000 random and mutated protocol messages
hit a target, clients without the right CURVE keys knock, malformed traces and scenario
files are read, links die for seconds through the shaper (Mininet), and the main job gets
SIGINT at random points of its setup, loading and workload (and SIGKILL, after which the
next run must sweep up), and one of its processes fails to start. What an earlier killed run
left is swept up first (as the main job does), and chaos refuses to start beside a live
emulation, whose resources would read as leaks. After each fault the machine
is searched for leftovers (namespaces, bridges, veths, cgroups, delay lines, processes) and
every event log is checked against what its process says it wrote. The Mininet faults need
root; elsewhere they are skipped, saying so. A fault still running after --fault-limit
seconds is stopped and not survived; its details name the line it hung on. Everything goes
to results/chaos-<time>/; with --json the last line is one JSON object: per fault
``survived`` and details, and the summary fields server_crashes, leaked_resources,
lost_events, unauthenticated_accepted and fuzz_messages. Exit 0 when every chosen fault
ran and was survived: one skipped (for want of root) is not survived, and the summary
counts it under ``skipped``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import psutil
from mininet.log import setLogLevel

from emulator.chaos.context import Chaos, Outcome
from emulator.chaos.emulator_faults import (
    PHASES,
    child_failed,
    link_outage,
    main_job_killed,
    sigint,
)
from emulator.chaos.ledger import count_leaks, leaks, lost_events, runtime_processes
from emulator.chaos.runtime_faults import RUNTIME_FAULTS
from emulator.chaos.time_limit import TimeLimitExceeded, time_limit
from emulator.net.cleanup import cleanup, sweep_before_run
from emulator.paths import ROOT
from emulator.run.orchestrate import missing_tools
from runtime.arguments import positive_float, positive_int
from runtime.models import load_model, make_draft
from runtime.process import stop_on_signals

Fault = Callable[[Chaos], Outcome]
MININET_FAULTS: dict[str, Fault] = {
    "link_outage": link_outage,
    **{f"sigint_{phase}": partial(sigint, phase=phase) for phase in PHASES},
    "main_job_killed": main_job_killed,
    "child_failed": child_failed,
}
FAULTS: dict[str, Fault] = {**RUNTIME_FAULTS, **MININET_FAULTS}
CLEAN_UP_LIMIT_S = 120.0
SUMMED = ("server_crashes", "unauthenticated_accepted", "fuzz_messages")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(FAULTS),
        metavar="FAULT",
        help=f"run only this fault (repeatable): {', '.join(FAULTS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds every random choice")
    parser.add_argument(
        "--messages",
        type=positive_int,
        default=10_000,
        help="protocol messages to fuzz (default %(default)s)",
    )
    parser.add_argument(
        "--fault-limit",
        type=positive_float,
        default=300.0,
        metavar="S",
        help="a fault still running after S seconds is stopped and not survived "
        "(default %(default)s)",
    )
    parser.add_argument("--out", default=str(ROOT / "results"), help="parent of the results")
    return parser.parse_args(argv)


def mininet_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (Mininet)"
    tools = missing_tools()
    return f"missing programs: {', '.join(tools)}" if tools else None


def run_fault(fault: Fault, chaos: Chaos, limit_s: float) -> dict:
    """Run one fault (one that runs past ``limit_s`` is not survived), then look for what it
    leaked or lost; clean up so the next starts from a clean machine whatever happened."""
    chaos.folder.mkdir(parents=True, exist_ok=True)
    before = runtime_processes()
    started = time.monotonic()
    try:
        with time_limit(limit_s, "the fault"):
            outcome = fault(chaos)
    except TimeLimitExceeded as exc:
        outcome = Outcome(False, {"error": str(exc)})
    except Exception as exc:  # a fault that could not even be made is not survived
        outcome = Outcome(False, {"error": f"{type(exc).__name__}: {exc}"})
    seconds = time.monotonic() - started
    try:
        with time_limit(CLEAN_UP_LIMIT_S, "the check and clean-up after it"):
            found = leaks(before, root=os.geteuid() == 0)
            lost, notes = lost_events(sorted(chaos.folder.rglob("*.jsonl")))
            _clean_up(before)
    except TimeLimitExceeded as exc:
        outcome = Outcome(False, {**outcome.details, "clean_up_error": str(exc)})
        found, lost, notes = {}, 0, []
    details = dict(outcome.details)
    if found:
        details["leaked"] = found
    if notes:
        details["lost"] = notes
    return {
        "survived": outcome.survived and not found and not lost,
        "seconds": round(seconds, 1),
        "details": details,
        "leaked_resources": count_leaks(found),
        "lost_events": lost,
        **{field: getattr(outcome, field) for field in SUMMED},
    }


def _clean_up(before: dict[int, str]) -> None:
    """Kill what the fault started and left running, and remove the emulator's leftovers."""
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            process.kill()
    for pid in runtime_processes():
        if pid not in before:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
    if os.geteuid() == 0:
        cleanup()


def summary(results: dict[str, dict], skipped: dict[str, str]) -> dict:
    ran = results.values()
    return {
        "faults": {
            **{
                name: {k: r[k] for k in ("survived", "seconds", "details")}
                for name, r in results.items()
            },
            # a fault that did not run was not survived: the run says so, and fails
            **{name: {"survived": False, "skipped": why} for name, why in skipped.items()},
        },
        "skipped": len(skipped),
        "server_crashes": sum(r["server_crashes"] for r in ran),
        "leaked_resources": sum(r["leaked_resources"] for r in ran),
        "lost_events": sum(r["lost_events"] for r in ran),
        "unauthenticated_accepted": sum(r["unauthenticated_accepted"] for r in ran),
        "fuzz_messages": sum(r["fuzz_messages"] for r in ran),
        "survived_all": not skipped and all(r["survived"] for r in ran),
    }


def print_table(results: dict[str, dict], skipped: dict[str, str]) -> None:
    print(f"\n{'fault':<20} {'outcome':<9} {'s':>6}  details")
    for name, r in results.items():
        verdict = "survived" if r["survived"] else "FAILED"
        shown = {k: v for k, v in r["details"].items() if k != "output"}
        print(f"{name:<20} {verdict:<9} {r['seconds']:>6.1f}  {json.dumps(shown)[:110]}")
    for name, why in skipped.items():
        print(f"{name:<20} {'skipped':<9} {'':>6}  {why}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    setLogLevel("error")
    chosen = {name: FAULTS[name] for name in args.only or FAULTS}
    why_not = mininet_missing()
    skipped = {name: why_not for name in chosen if name in MININET_FAULTS and why_not}
    busy = sweep_before_run(lambda message: print(f"chaos: {message}", flush=True))
    if busy:  # a live emulation's resources would read as this run's leaks
        print(f"chaos: {busy[0]}")
        return 2
    out = Path(args.out) / f"chaos-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"chaos: {len(chosen) - len(skipped)} fault(s), seed {args.seed}; files in {out}")
    target = load_model("tiny")
    draft = make_draft("perturbed:0.1", target)
    rng = random.Random(args.seed)
    running_before = runtime_processes()  # not ours: never killed, also on Ctrl-C
    results: dict[str, dict] = {}
    interrupted = False
    to_run = [name for name in chosen if name not in skipped]
    for index, name in enumerate(to_run, start=1):
        print(f"chaos: [{index}/{len(to_run)}] {name} ...", flush=True)
        chaos = Chaos(out / name, rng, target, draft, args.messages)
        try:
            results[name] = run_fault(chosen[name], chaos, args.fault_limit)
        except KeyboardInterrupt:
            interrupted = True
            _clean_up(running_before)
            print("chaos: interrupted; the faults so far are reported")
            break
        verdict = "survived" if results[name]["survived"] else "FAILED"
        print(f"chaos: {name}: {verdict} ({results[name]['seconds']:.1f} s)", flush=True)
        (out / "chaos.json").write_text(json.dumps(summary(results, skipped), indent=1))
    report = summary(results, skipped)
    print_table(results, skipped)
    print(
        f"\nserver crashes {report['server_crashes']}, leaked resources "
        f"{report['leaked_resources']}, lost events {report['lost_events']}, "
        f"unauthenticated accepted {report['unauthenticated_accepted']}, "
        f"fuzz messages {report['fuzz_messages']}; details in {out / 'chaos.json'}"
    )
    if args.json:
        print(json.dumps(report))
    if interrupted:
        return 130
    return 0 if report["survived_all"] else 1


if __name__ == "__main__":
    sys.exit(main())
