"""What a fault leaked or lost, counted from the outside.

Leaks: whatever ``emulator.net.cleanup`` finds (namespaces, bridges, veths, cgroups, delay
lines, host shells, socket folders), plus runtime processes that were not running before
the fault and still run. Lost events: every process's ``process`` record says how many events it
wrote (and an edge how many requests it started); the log must hold that many (and a
``request`` event for each). A process killed outright has no such record: its own log is
checked for gaps instead.
"""

from __future__ import annotations

import collections
from pathlib import Path

import psutil

from emulator.net.cleanup import find_leftovers
from runtime.events import read_events

RUNTIME_MODULES = ("runtime.target", "runtime.draft")


def runtime_processes() -> dict[int, str]:
    """Target and draft processes running now: PID -> command line."""
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if any(module in cmdline for module in RUNTIME_MODULES):
            found[process.pid] = cmdline[:80]
    return found


def leaks(before: dict[int, str], root: bool) -> dict[str, list[str]]:
    """Everything left behind: runtime processes not running ``before`` the fault, and the
    emulator's kinds where they can exist (root)."""
    found = {kind: items for kind, items in find_leftovers().items() if items} if root else {}
    strays = [f"{pid}:{cmd}" for pid, cmd in runtime_processes().items() if pid not in before]
    if strays:
        found["runtime processes"] = strays
    return found


def count_leaks(found: dict[str, list[str]]) -> int:
    return sum(len(items) for items in found.values())


def lost_events(logs: list[Path]) -> tuple[int, list[str]]:
    """Events and requests the processes say they wrote that their logs do not hold. A
    process killed by SIGKILL wrote no ``process`` record: its log is held to itself
    instead, each session's rounds numbered without a gap."""
    lost, notes = 0, []
    for log in logs:
        seen: collections.Counter[str] = collections.Counter()
        requests: collections.Counter[str] = collections.Counter()
        rounds: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
        for event in read_events(log):
            proc = event.get("proc", "?")
            if event.get("event") != "process":
                seen[proc] += 1
                requests[proc] += event.get("event") == "request"
                if event.get("event") == "round" and isinstance(event.get("round"), int):
                    rounds[(proc, event.get("session", "?"))].add(event["round"])
                continue
            missing = max(0, event.get("events", 0) - seen[proc])
            missing += max(0, event.get("requests_started", 0) - requests[proc])
            if missing:
                notes.append(f"{log.name}: {proc} wrote more than the log holds ({missing})")
            lost += missing
            seen[proc] = requests[proc] = 0
            rounds = collections.defaultdict(set, {k: v for k, v in rounds.items() if k[0] != proc})
        for (proc, session), indices in rounds.items():
            gaps = max(indices) - min(indices) + 1 - len(indices)
            if gaps:
                notes.append(
                    f"{log.name}: {proc} (no process record) lacks {gaps} round(s) of {session}"
                )
            lost += gaps
    return lost, notes
