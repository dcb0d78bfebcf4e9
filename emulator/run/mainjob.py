"""DSD-Emu's main job as a library call: a scenario in Mininet with real draft and target
processes, its traces replayed on every link, then the simulator's prediction beside it.
``run_scenario`` does one run in this process; ``emulator.run.child_runs`` runs it in a fresh
one, as the programs that need many runs do."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from mininet.log import setLogLevel

from emulator.net.cleanup import sweep_before_run
from emulator.report.fidelity import compare, headline, headline_errors
from emulator.report.run_report import write_results
from emulator.run.interrupts import shielded
from emulator.run.orchestrate import Emulation, EmulationError, describe_host, missing_tools
from emulator.run.prediction import predict_run
from emulator.run.progress import Progress
from emulator.scenario import Scenario
from emulator.sim.calibration import CalibrationError
from emulator.sim.machine_profiles import machine_profile
from runtime.events import read_events
from runtime.metrics import summarise
from runtime.models import ModelError, prepare_model

Say = Callable[[str], None]


class RunRefused(RuntimeError):
    """The run cannot start here; ``problems`` says each reason, before any namespace."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RunOptions:
    """How to run a scenario: where its results folder goes, whether to simulate beside it,
    how long the workload may take, and the command recorded in ``run.json``."""

    out: Path
    simulate: bool = True
    timeout_s: float = 3600.0
    shaper_backend: str = "netem"
    shaper_reason: str = ""
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class RunOutcome:
    """What one run left: its results folder, status and both worlds' summaries."""

    results: Path
    status: str  # complete, interrupted or failed
    backend: str
    emu: dict[str, Any] | None = None
    sim: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    edge_exit_codes: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def exit_code(self) -> int:
        """0 for a complete run whose edges all exited cleanly, 130 interrupted, else 1."""
        if self.status == "interrupted":
            return 130
        if self.status == "failed":
            return 1
        return 0 if all(code == 0 for code in self.edge_exit_codes.values()) else 1

    def summary(self) -> dict[str, Any]:
        """The outcome as JSON: what ``--json-summary`` prints and a child run writes."""
        return {
            "results_dir": str(self.results),
            "status": self.status,
            "backend": self.backend,
            "emu": headline(self.emu) if self.emu else None,
            "sim": headline(self.sim) if self.sim else None,
            "error": headline_errors(self.comparison) if self.comparison else None,
            "replayed_rounds": (self.emu or {}).get("replayed_rounds"),
            "failure": self.error,
        }


def preflight(scenario: Scenario, need_sim: bool, say: Say) -> list[str]:
    """Everything missing, said exactly, before any namespace exists; with nothing missing,
    this machine's profiles for the simulator (measured now if there are none yet)."""
    why = scenario.simulator_only()
    if why:
        return [f"{why}: only the simulator runs it (python scripts/simulate.py {scenario.path})"]
    problems = []
    if os.geteuid() != 0:
        problems.append("Mininet needs root: run it as sudo python scripts/run_topology.py ...")
    tools = missing_tools()
    if tools:
        problems.append(
            f"missing programs: {', '.join(tools)} (bash scripts/bootstrap.sh install adds them)"
        )
    try:
        prepare_model(scenario.cloud.model)
    except ModelError as exc:
        problems.append(f"model: {exc}")
    replayed = any(group.replay for group in scenario.edges)
    if (need_sim or replayed) and not problems:
        for draft in sorted({group.draft for group in scenario.edges}):
            try:
                machine_profile(scenario.cloud.model, draft, scenario.cloud.threads, say=say)
            except CalibrationError as exc:
                problems.append(f"simulator: {exc} (or run with --no-sim)")
    return problems


def replay_profiles(scenario: Scenario, say: Say) -> dict[str, Path]:
    """Per draft that emulated edges replay, this machine's profile of it (preflight made
    sure it exists)."""
    drafts = {group.draft for group in scenario.edges if group.replay}
    cloud = scenario.cloud
    return {
        draft: Path(machine_profile(cloud.model, draft, cloud.threads, say=say).source)
        for draft in sorted(drafts)
    }


def run_scenario(scenario: Scenario, options: RunOptions, say: Say) -> RunOutcome:
    """Run the scenario and write its results folder under ``options.out``; ``run.json``
    says at every moment whether the run is running, complete, interrupted or failed, and
    nothing the processes wrote is lost on failure. Raises ``RunRefused`` before anything
    starts where the run cannot."""
    problems = preflight(scenario, options.simulate, say) + sweep_before_run(say)
    if problems:
        raise RunRefused(problems)
    backend = options.shaper_backend
    out = options.out / f"{datetime.now():%Y%m%d-%H%M%S}-{scenario.name}"
    out.mkdir(parents=True, exist_ok=True)
    started_info = {"command": options.command, "status": "running", "started": time.time()}
    (out / "run.json").write_text(json.dumps(started_info, indent=1))
    try:
        (out / "scenario.yaml").write_text(yaml.safe_dump(scenario.raw, sort_keys=False))
        say(
            f"{scenario.name}: {len(scenario.edge_hosts())} edge(s), {scenario.cloud.model} "
            f"target; shaping with {backend} ({options.shaper_reason}); results in {out}"
        )
        setLogLevel("error")  # Mininet's own chatter (bridge netfilter notes) is not for users
        emulation = Emulation(
            scenario,
            out,
            backend,
            sys.executable,
            options.timeout_s,
            say,
            replay_profiles(scenario, say),
        )
        result = emulation.run(Progress(scenario, out))
    except (EmulationError, OSError) as exc:
        # everything was torn down already; what the processes wrote is kept
        failed = {**started_info, "status": "failed", "error": str(exc)}
        (out / "run.json").write_text(json.dumps(failed, indent=1))
        return RunOutcome(out, "failed", backend, error=str(exc))
    except KeyboardInterrupt:  # in the moment before the emulation took over the signals
        stopped = {**started_info, "status": "interrupted", "interrupted": True}
        (out / "run.json").write_text(json.dumps(stopped, indent=1))
        why = "interrupted before the network was up"
        return RunOutcome(out, "interrupted", backend, error=why)
    with shielded(say):  # the emulated run is over: its results are written whatever comes
        emu_events = read_events(*result.logs)
        emu = summarise(emu_events)
    outcome = RunOutcome(
        out, "complete", backend, emu, wall_s=result.wall_s, edge_exit_codes=result.edge_exit_codes
    )
    if not result.watches_idle_cgroup:
        outcome.notes.append(
            "no idle cgroup (cpu.idle) here: the speed watches ran at SCHED_IDLE alone, "
            "which let them delay a waking target by up to 140 ms where measured"
        )
    sim_events: list[dict[str, Any]] = []
    speeds: dict[str, float] = {}
    calibration: dict[str, dict[str, Any]] = {}
    interrupted = result.interrupted
    if options.simulate and not interrupted:
        say("simulating the same scenario")
        started = time.monotonic()
        try:
            sim_events, notes, simulation = predict_run(scenario, out, result.cpus, emu_events)
            speeds, calibration = simulation.speeds, simulation.calibration()
            outcome.notes += notes
            outcome.sim = summarise(sim_events)
            outcome.comparison = compare(emu, outcome.sim)
            say(f"simulated in {time.monotonic() - started:.1f} s")
        except KeyboardInterrupt:
            interrupted = True
            sim_events = []
            say("interrupted while simulating: writing the emulated results alone")
    outcome.status = "interrupted" if interrupted else "complete"
    run_info = {
        **started_info,
        "status": outcome.status,
        "backend": backend,
        "backend_reason": options.shaper_reason,
        "host": describe_host(),
        "host_settings": result.host_settings,
        "cpus": result.cpus,
        "t_start": result.t_start,
        "wall_s": result.wall_s,
        "replay_lateness_ms_p99": result.replay_lateness_ms_p99,
        "edge_exit_codes": result.edge_exit_codes,
        "interrupted": interrupted,
        # the simulator's compute times relative to the profile, from the hosts' probes
        "sim_speeds": speeds,
        # per draft model, the profile the simulation was calibrated from and its machine
        "sim_profiles": calibration,
    }
    with shielded(say):
        report = write_results(
            out, scenario, run_info, emu_events, sim_events, emu, outcome.sim, outcome.comparison
        )
    replayed = emu.get("replayed_rounds")
    if replayed:
        total = replayed["table"] + replayed["fallback"]
        outcome.notes.append(
            f"emulated edges (draft: replay): {replayed['table']} of {total} DSD rounds replayed "
            f"the recorded tables, {replayed['fallback']} asked the shared real draft"
        )
    outcome.notes = report.warnings + report.notes + outcome.notes
    return outcome
