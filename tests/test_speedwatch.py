"""The speed watch: a real watch process on a CPU, starved by a busy process at normal
priority and probing once that CPU is free (the tiny models); and which probes stand for a
host's speed in the simulation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from emulator.sim.calibration import MIN_WATCHED, host_probes
from runtime.events import read_events
from runtime.speedwatch import DUTY, READY, busy_jiffies

ROOT = Path(__file__).resolve().parents[1]
CPU = (os.cpu_count() or 1) - 1
SPIN = "while True: pass"


def probes(log: Path) -> int:
    return sum(1 for e in read_events(log) if e["event"] == "speed") if log.exists() else 0


def wait_for(output: Path, marker: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while marker not in (output.read_text() if output.exists() else ""):
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


@pytest.mark.slow
def test_a_watch_probes_only_in_its_cpu_s_idle_time(tmp_path: Path) -> None:
    """Beside a busy process on its CPU the watch gets (next to) no CPU time; once the CPU is
    free it probes, about ``DUTY`` of the time."""
    log, output = tmp_path / "watch.jsonl", tmp_path / "watch.txt"
    spinner = subprocess.Popen(["taskset", "-c", str(CPU), sys.executable, "-c", SPIN])
    command = [sys.executable, "-m", "runtime.speedwatch", "--role", "draft", "--cpus", str(CPU)]
    command += ["--target", "tiny", "--draft", "perturbed:0.1", "--log", str(log)]
    with output.open("w") as handle:
        watch = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    try:
        wait_for(output, READY)
        assert os.sched_getscheduler(watch.pid) == os.SCHED_IDLE
        time.sleep(0.5)  # the spinner holds the CPU from here on
        before = cpu_seconds(watch.pid)
        time.sleep(3.0)
        starved = cpu_seconds(watch.pid) - before
        spinner.kill()
        spinner.wait()
        before, probed_before = cpu_seconds(watch.pid), probes(log)
        time.sleep(6.0)
        free, probed = cpu_seconds(watch.pid) - before, probes(log) - probed_before
    finally:
        spinner.kill()
        watch.terminate()
        assert watch.wait(timeout=30) == 0
    assert starved < 0.1 and free > 0.5 * DUTY * 6.0 and probed >= 2, (starved, free, probed)
    events = [e for e in read_events(log) if e["event"] == "speed"]
    assert {e["at"] for e in events} == {"during"}
    assert {e["proc"] for e in events} == {f"watch-cpu{CPU}"}
    assert all(e["ms"] > 0 for e in events)
    # None where a probe took less than a jiffy of the other CPUs' time (the tiny models)
    assert all(e["others_busy"] is None or 0.0 <= e["others_busy"] <= 1.0 for e in events)


def test_a_watch_that_cannot_load_says_why(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "runtime.speedwatch", "--role", "target", "--cpus", "0"]
    command += ["--target", "./no/such-model", "--log", str(tmp_path / "w.jsonl")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout.startswith("watch: error:") and "no/such-model" in done.stdout


def test_busy_jiffies_count_a_busy_cpu_as_busy() -> None:
    spinner = subprocess.Popen(["taskset", "-c", str(CPU), sys.executable, "-c", SPIN])
    try:
        time.sleep(0.3)
        busy, total = busy_jiffies({CPU})
        time.sleep(1.0)
        busy_after, total_after = busy_jiffies({CPU})
    finally:
        spinner.kill()
    assert (busy_after - busy) / (total_after - total) > 0.9


def probe(proc: str, at: str, ms: float, role: str = "draft") -> dict:
    return {"event": "speed", "proc": proc, "role": role, "at": at, "ms": ms}


@pytest.mark.parametrize("watched", [MIN_WATCHED - 1, MIN_WATCHED])
def test_a_host_s_speed_comes_from_the_watch_on_its_cpu_where_it_probed_enough(
    watched: int,
) -> None:
    own = [probe("e1", "start", 100.0), probe("e1", "end", 120.0)]
    during = [probe("watch-cpu0", "during", 90.0 + i) for i in range(watched)]
    elsewhere = [probe("watch-cpu1", "during", 50.0, "target") for _ in range(5)]
    plan = {"cloud": "1", "e1": "0"}
    chosen = host_probes(own + during + elsewhere, "e1", plan)
    assert chosen == (during if watched >= MIN_WATCHED else own)
    assert host_probes(own + during + elsewhere, "cloud", plan) == elsewhere
    assert host_probes(own + during, "e1", None) == own  # no plan: no watch is its CPU's
