"""A speed watch: this machine's speed followed through a run, in the CPU's idle time.

A role's speed probe (``runtime.profile.speed_probe``) before the workload and one after it
are two readings of a virtual machine whose speed wanders: back-to-back probes on an idle
machine differ by up to 30 %, and a run's two by up to 65 %, so their mean can miss the
speed the run met in between. A watch is a process pinned to one role's CPU that, once its
model is loaded, lowers itself to ``SCHED_IDLE`` (the kernel runs it only when that CPU has
nothing else to run) and times the role's probe over and over, a pause between, logging
each as a ``speed`` event ``at: "during"``. Beside other cgroups ``SCHED_IDLE`` alone still
let it delay a waking process by up to 140 ms here, so the emulator also puts it in a cgroup
marked idle (``emulator.net.idle_cgroup``). Its probes are CPU time, so being preempted does not
count; what it costs the run is the other CPUs' share of the memory it reads while it
computes, which ``DUTY`` bounds. Each probe records how busy the other CPUs were meanwhile
(``others_busy``, from ``/proc/stat``).

    python -m runtime.speedwatch --role target --cpus 1 --log watch.jsonl
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from runtime.events import EventLog
from runtime.models import LoadedModel, ModelError, load_role
from runtime.process import stop_on_signals
from runtime.profile import speed_probe

READY = "watch: ready"
DUTY = 0.25  # at most this share of the CPU's idle time computes probes
REPEATS = 2  # timings per probe: many short probes follow the speed better than a few long
STAT = Path("/proc/stat")


def busy_jiffies(cpus: set[int]) -> tuple[int, int]:
    """(busy, total) jiffies of ``cpus`` since boot, from ``/proc/stat`` (idle and iowait
    count as not busy; steal as busy: the CPU was not ours)."""
    busy = total = 0
    for line in STAT.read_text().splitlines():
        name, *counts = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(c) for c in counts[:8]]
        idle = values[3] + values[4]
        busy += sum(values) - idle
        total += sum(values)
    return busy, total


def watch(model: LoadedModel, role: str, log: EventLog, own: set[int]) -> None:
    """Probe ``role``'s speed until stopped or orphaned, each probe followed by a pause that
    keeps the probes' CPU time to ``DUTY`` of the wall time."""
    others = set(range(os.cpu_count() or 1)) - own
    parent = os.getppid()
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    print(READY, flush=True)
    while os.getppid() == parent:  # a run killed outright leaves no watch behind
        busy_before, total_before = busy_jiffies(others)
        started, computed = time.monotonic(), time.thread_time()
        probe = speed_probe(model, role, REPEATS)
        elapsed, computed = time.monotonic() - started, time.thread_time() - computed
        busy_after, total_after = busy_jiffies(others)
        spent = total_after - total_before
        log.write(
            "speed",
            **probe,
            at="during",
            t=time.time(),
            wall_ms=elapsed * 1000.0,
            others_busy=(busy_after - busy_before) / spent if spent else None,
        )
        time.sleep(computed * (1.0 - DUTY) / DUTY)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="probe one role's speed in a CPU's idle time")
    parser.add_argument("--role", choices=("draft", "target"), required=True)
    parser.add_argument("--target", default="smollm2", help="the target model (both roles)")
    parser.add_argument("--draft", default="int8", help="the draft model (role draft)")
    parser.add_argument("--cpus", type=int, required=True, help="the CPU to watch")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--name", default=None, help="the log's process name (watch-cpuN)")
    args = parser.parse_args(argv)
    stop_on_signals()
    try:
        _, model = load_role(args.role, args.target, args.draft, args.cpus)
        log = EventLog(args.log, args.name or f"watch-cpu{args.cpus}")
        watch(model, args.role, log, {args.cpus})
    except (ModelError, ValueError, OSError) as exc:
        print(f"watch: error: {exc}", flush=True)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
