"""Cross-core interference measurement: a real neighbour process on another CPU, paused and
resumed, and the ratios a profile holds (the tiny models)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from runtime import interference

ROOT = Path(__file__).resolve().parents[1]
OWN = {(os.cpu_count() or 1) - 1}
OTHER = interference.other_cpu(OWN)
needs_two_cpus = pytest.mark.skipif(OTHER is None, reason="one CPU: no other CPU for a neighbour")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


@pytest.mark.slow
@needs_two_cpus
def test_a_neighbour_computes_on_its_cpu_until_paused_and_stops_cleanly() -> None:
    neighbour = interference.Neighbour("draft", "tiny", "perturbed:0.1", OTHER)
    pid = neighbour.process.pid
    try:
        assert psutil.Process(pid).cpu_affinity() == [OTHER]
        start = cpu_seconds(pid)
        time.sleep(0.5)
        assert cpu_seconds(pid) - start > 0.25  # computing nonstop
        neighbour.pause()
        paused = cpu_seconds(pid)
        time.sleep(0.5)
        assert cpu_seconds(pid) - paused < 0.05
        neighbour.resume()
        resumed = cpu_seconds(pid)
        time.sleep(0.5)
        assert cpu_seconds(pid) - resumed > 0.25
    finally:
        neighbour.pause()  # stopping must work on a paused neighbour too
        neighbour.stop()
    assert neighbour.process.returncode is not None and not psutil.pid_exists(pid)


@pytest.mark.slow
@needs_two_cpus
def test_a_neighbour_whose_parent_is_killed_stops() -> None:
    """A profiler killed outright (no chance to stop its neighbours) leaves none computing."""
    starter = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from runtime import interference; "
            f"n = interference.Neighbour('draft', 'tiny', 'perturbed:0.1', {OTHER}); "
            "print(n.process.pid, flush=True); os._exit(0)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pid = int(starter.stdout.split()[-1])
    try:
        psutil.Process(pid).wait(timeout=10)  # raises if it is still computing
    finally:
        if psutil.pid_exists(pid):
            psutil.Process(pid).kill()


@pytest.mark.slow
@needs_two_cpus
def test_a_neighbour_that_cannot_load_says_why() -> None:
    with pytest.raises(
        RuntimeError, match=r"(?s)the target neighbour did not start.*no-such-model"
    ):
        interference.Neighbour("target", "no-such-model", "int8", OTHER)


def test_a_ratio_is_resolved_where_chance_would_split_its_alternations_so_seldom() -> None:
    assert interference.resolved([1.1] * 5) and interference.resolved([0.9] * 5)
    assert not interference.resolved([1.1] * 4 + [0.9])
    assert interference.resolved([1.1] * 12 + [0.9] * 3)  # p = 0.035 two-sided
    assert not interference.resolved([1.1] * 11 + [0.9] * 4)  # p = 0.12
    assert not interference.resolved([1.0] * 5) and not interference.resolved([])


def test_there_is_no_other_cpu_beside_every_cpu() -> None:
    assert interference.other_cpu(set(range(os.cpu_count() or 1))) is None
