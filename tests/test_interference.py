"""Cross-core interference measurement: a real neighbour process on another CPU, paused and
resumed, and the ratios a profile holds (the tiny models)."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from runtime import interference

OWN = {(os.cpu_count() or 1) - 1}
OTHER = interference.other_cpu(OWN)
needs_two_cpus = pytest.mark.skipif(OTHER is None, reason="one CPU: no other CPU for a neighbour")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


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


@needs_two_cpus
def test_a_neighbour_that_cannot_load_says_why() -> None:
    with pytest.raises(
        RuntimeError, match=r"(?s)the target neighbour did not start.*no-such-model"
    ):
        interference.Neighbour("target", "no-such-model", "int8", OTHER)


def test_there_is_no_other_cpu_beside_every_cpu() -> None:
    assert interference.other_cpu(set(range(os.cpu_count() or 1))) is None
