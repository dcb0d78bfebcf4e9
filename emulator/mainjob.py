"""The main job (``scripts/run_topology.py``) run as a child process, once per scenario, by
the programs that need many runs (the window-policy evaluation, the fidelity suite): each
run is a fresh process, so one run's failure or leftovers cannot spoil the next."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.events import read_events

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_topology.py"
NOT_EVENT_LOGS = {"links.jsonl", "resources.jsonl", "sim.jsonl"}


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
    try:
        run = subprocess.run(
            [*command, "--json-summary", *options],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MainJobFailed(f"took over {timeout_s:.0f} s") from exc
    if run.returncode != 0:
        lines = (run.stderr.strip() or run.stdout.strip()).splitlines()
        raise MainJobFailed(" / ".join(lines[-3:]) or f"exit status {run.returncode}")
    return MainJobRun(Path(json.loads(run.stdout.strip().splitlines()[-1])["results_dir"]))
