"""What a fault leaked or lost, counted from the outside.

Leaks: whatever ``emulator.cleanup`` finds (namespaces, bridges, veths, cgroups, delay
lines, host shells, socket folders), plus runtime processes started since the fault began
that still run. Lost events: every process's ``process`` record says how many events it
wrote (and an edge how many requests it started); the log must hold that many (and a
``request`` event for each).
"""

from __future__ import annotations

import collections
from pathlib import Path

import psutil

from emulator.cleanup import find_leftovers
from runtime.events import read_events

RUNTIME_MODULES = ("runtime.target", "runtime.draft")


def stray_processes(since: float) -> list[str]:
    """Target and draft processes started at or after ``since`` (epoch s) that still run."""
    found = []
    for process in psutil.process_iter(["cmdline", "create_time"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if (process.info["create_time"] or 0) >= since and any(
            module in cmdline for module in RUNTIME_MODULES
        ):
            found.append(f"{process.pid}:{cmdline[:80]}")
    return found


def leaks(since: float, root: bool) -> dict[str, list[str]]:
    """Everything left behind; the emulator's kinds only where they can exist (root)."""
    found = {kind: items for kind, items in find_leftovers().items() if items} if root else {}
    strays = stray_processes(since)
    if strays:
        found["runtime processes"] = strays
    return found


def count_leaks(found: dict[str, list[str]]) -> int:
    return sum(len(items) for items in found.values())


def lost_events(logs: list[Path]) -> tuple[int, list[str]]:
    """Events and requests the processes say they wrote that their logs do not hold."""
    lost, notes = 0, []
    for log in logs:
        seen: collections.Counter[str] = collections.Counter()
        requests: collections.Counter[str] = collections.Counter()
        for event in read_events(log):
            proc = event.get("proc", "?")
            if event.get("event") != "process":
                seen[proc] += 1
                requests[proc] += event.get("event") == "request"
                continue
            missing = max(0, event.get("events", 0) - seen[proc])
            missing += max(0, event.get("requests_started", 0) - requests[proc])
            if missing:
                notes.append(f"{log.name}: {proc} wrote more than the log holds ({missing})")
            lost += missing
            seen[proc] = requests[proc] = 0
    return lost, notes
