"""CPU and memory of every process of a run (and of each core), sampled once a second.

On a small machine, CPU contention between drafters, the target and the shapers is the
first thing that makes an emulation differ from its simulation, so the samples are kept
(``sample`` events in ``resources.jsonl``) and summarised in the report.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from runtime.events import EventLog

INTERVAL_S = 1.0
BUSY_PERCENT = 95.0


class ResourceSampler:
    """A background thread writing one ``sample`` event per interval; a context manager."""

    def __init__(self, pids: dict[str, int], path: Path, interval_s: float = INTERVAL_S) -> None:
        self.log = EventLog(path, "resources")
        self.interval_s = interval_s
        self.processes: dict[str, psutil.Process] = {}
        for name, pid in pids.items():
            try:
                self.processes[name] = psutil.Process(pid)
                self.processes[name].cpu_percent(None)  # the first call only starts the count
            except psutil.Error:
                continue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resources", daemon=True)

    def __enter__(self) -> ResourceSampler:
        psutil.cpu_percent(None, percpu=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.log.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            processes = {}
            for name, process in self.processes.items():
                try:
                    with process.oneshot():
                        processes[name] = {
                            "cpu_percent": process.cpu_percent(None),
                            "rss_mb": process.memory_info().rss / 2**20,
                        }
                except psutil.Error:
                    continue
            self.log.write(
                "sample",
                t=time.time(),
                cores=psutil.cpu_percent(None, percpu=True),
                processes=processes,
            )


def summarise_samples(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per core: mean busy % and the share of samples at >= 95 %; per process: mean and max
    CPU % (100 = one core) and peak memory."""
    samples = [e for e in events if e.get("event") == "sample"]
    if not samples:
        return {"samples": 0, "cores": [], "processes": {}}
    cores = np.array([s["cores"] for s in samples], dtype=float)
    names = sorted({name for s in samples for name in s["processes"]})
    processes = {}
    for name in names:
        cpu = [s["processes"][name]["cpu_percent"] for s in samples if name in s["processes"]]
        rss = [s["processes"][name]["rss_mb"] for s in samples if name in s["processes"]]
        processes[name] = {
            "cpu_percent_mean": float(np.mean(cpu)),
            "cpu_percent_max": float(np.max(cpu)),
            "rss_mb_max": float(np.max(rss)),
        }
    return {
        "samples": len(samples),
        "cores": [
            {
                "core": index,
                "busy_percent_mean": float(cores[:, index].mean()),
                "saturated_share": float((cores[:, index] >= BUSY_PERCENT).mean()),
            }
            for index in range(cores.shape[1])
        ],
        "processes": processes,
    }


def shaping_cost(summary: dict[str, Any]) -> dict[str, Any] | None:
    """What the link shapers took (``shaper:*`` processes): how many, their CPU in all
    (mean % of one core over the run), the busiest one's peak and the largest one's memory."""
    shapers = {k: v for k, v in summary.get("processes", {}).items() if k.startswith("shaper:")}
    if not shapers:
        return None
    return {
        "shapers": len(shapers),
        "cpu_percent_mean_total": sum(v["cpu_percent_mean"] for v in shapers.values()),
        "cpu_percent_max_one": max(v["cpu_percent_max"] for v in shapers.values()),
        "rss_mb_max_one": max(v["rss_mb_max"] for v in shapers.values()),
    }
