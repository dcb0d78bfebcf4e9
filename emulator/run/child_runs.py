"""The main job run as a child process (``python -m emulator.cli.main run``), once per scenario,
by the programs that need many runs (the fidelity suite, the window-policy evaluation, the
capacity sweep): each run is a fresh process, so one run's failure or leftovers cannot
spoil the next. Nothing here needs Mininet: those programs' simulated worlds run without."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.events import read_events

NOT_EVENT_LOGS = {"links.jsonl", "resources.jsonl", "sim.jsonl"}
STOP_TIMEOUT_S = 60.0


class MainJobFailed(RuntimeError):
    """A child run did not finish; the message gives the last lines it printed."""


@dataclass(frozen=True)
class MainJobRun:
    """A finished child run: its results folder and the events of both worlds."""

    results: Path

    def emulated_events(self) -> list[dict[str, Any]]:
        logs = [p for p in sorted(self.results.glob("*.jsonl")) if p.name not in NOT_EVENT_LOGS]
        return read_events(*logs)

    def simulated_events(self) -> list[dict[str, Any]]:
        return read_events(self.results / "sim.jsonl")


def main_job_command(scenario: Path, out: Path, *options: str) -> list[str]:
    """The command line of one child run of the main job."""
    return [
        sys.executable,
        "-m",
        "emulator.cli.main",
        "run",
        *("--scenario", str(scenario), "--out", str(out), *options),
    ]


def run_main_job(scenario: Path, out: Path, timeout_s: float, *options: str) -> MainJobRun:
    """Run the main job on a scenario file in a child process (results under ``out``), wait
    for it and read the outcome it wrote."""
    with tempfile.TemporaryDirectory(prefix="dsd-emu-outcome-") as folder:
        outcome_path = Path(folder) / "outcome.json"
        command = main_job_command(scenario, out, "--outcome", str(outcome_path), *options)
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child:
            try:
                stdout, stderr = child.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                _stop(child)
                raise MainJobFailed(f"took over {timeout_s:.0f} s") from exc
            except KeyboardInterrupt:
                _stop(child)  # its own Ctrl-C handling tears the network down, keeps its logs
                raise
        if child.returncode != 0 or not outcome_path.is_file():
            lines = (stderr.strip() or stdout.strip()).splitlines()
            raise MainJobFailed(" / ".join(lines[-3:]) or f"exit status {child.returncode}")
        return MainJobRun(Path(json.loads(outcome_path.read_text())["results_dir"]))


def _stop(child: subprocess.Popen) -> None:
    """SIGINT, as a Ctrl-C would, and time for the teardown; SIGKILL only past that."""
    child.send_signal(signal.SIGINT)
    try:
        child.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
