"""The main job (``scripts/run_topology.py``) run as a child process, once per scenario, by
the programs that need many runs (the window-policy evaluation, the fidelity suite): each
run is a fresh process, so one run's failure or leftovers cannot spoil the next."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.events import read_events

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_topology.py"
NOT_EVENT_LOGS = {"links.jsonl", "resources.jsonl", "sim.jsonl"}
STOP_TIMEOUT_S = 60.0


class MainJobFailed(RuntimeError):
    """A run did not finish; the message gives the last lines it printed."""


@dataclass(frozen=True)
class MainJobRun:
    """A finished run: its results folder and the events of both worlds."""

    results: Path

    def emulated_events(self) -> list[dict[str, Any]]:
        logs = [p for p in sorted(self.results.glob("*.jsonl")) if p.name not in NOT_EVENT_LOGS]
        return read_events(*logs)

    def simulated_events(self) -> list[dict[str, Any]]:
        return read_events(self.results / "sim.jsonl")


def run_main_job(scenario: Path, out: Path, timeout_s: float, *options: str) -> MainJobRun:
    """Run the main job on a scenario file (results under ``out``) and wait for it."""
    command = [sys.executable, str(SCRIPT), "--topology", str(scenario), "--out", str(out)]
    with subprocess.Popen(
        [*command, "--json-summary", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            _stop(child)
            raise MainJobFailed(f"took over {timeout_s:.0f} s") from exc
        except KeyboardInterrupt:
            _stop(child)  # its own Ctrl-C handling tears the network down and keeps its logs
            raise
    if child.returncode != 0:
        lines = (stderr.strip() or stdout.strip()).splitlines()
        raise MainJobFailed(" / ".join(lines[-3:]) or f"exit status {child.returncode}")
    return MainJobRun(Path(json.loads(stdout.strip().splitlines()[-1])["results_dir"]))


def _stop(child: subprocess.Popen) -> None:
    """SIGINT, as a Ctrl-C would, and time for the teardown; SIGKILL only past that."""
    child.send_signal(signal.SIGINT)
    try:
        child.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
