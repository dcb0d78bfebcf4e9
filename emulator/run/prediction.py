"""The simulator's prediction of an emulated run, beside it: the same scenario, calibrated
to the CPUs the emulation pinned its hosts to and the speeds their probes measured, with a
note for every way the simulation was fitted to this run's machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.scenario import Scenario
from emulator.sim.calibration import probed_unequal_rows, speed_source
from emulator.sim.simulation import SimOptions, Simulation
from runtime.events import EventLog


def predict_run(
    scenario: Scenario, out: Path, cpus: dict[str, str], emu_events: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str], Simulation]:
    """The simulated run's events (also written to ``out/sim.jsonl``), its warnings and
    calibration notes, and the simulation itself."""
    log = EventLog(out / "sim.jsonl", "sim", keep=True, flush_each=False)
    probes = [e for e in emu_events if e["event"] == "speed"]
    simulation = Simulation(scenario, log, SimOptions(cpu_plan=cpus, speed_probes=probes))
    simulation.run()
    log.close()
    return log.events, simulation.warnings + calibration_notes(simulation, probes, cpus), simulation


def calibration_notes(
    simulation: Simulation, probes: list[dict[str, Any]], cpus: dict[str, str]
) -> list[str]:
    speeds = ", ".join(
        f"{host} x{speed:.2f} ({speed_source(probes, host, cpus)})"
        for host, speed in simulation.speeds.items()
    )
    notes = [f"compute times scaled to the hosts' speed probes: {speeds}"] if speeds else []
    target = simulation.targets[0]  # every replica is calibrated alike
    shapes = target.verify_speeds
    if shapes:
        shown = "; ".join(
            f"{batch} row(s) of " + ", ".join(f"{w} x{s:.2f}" for w, s in widths.items())
            for batch, widths in shapes.items()
        )
        notes.append(f"the cloud's verifications scaled by shape (rows of tokens): {shown}")
    if target.prefill_speed is not None:
        notes.append(f"the cloud's prefills scaled x{target.prefill_speed:.2f}")
    if target.unequal_rows != 1.0:
        notes.append(
            f"the cloud's batches of rows of unequal lengths x{target.unequal_rows:.2f} "
            f"({'probed' if probed_unequal_rows(probes, cpus) else 'as profiled'})"
        )
    coupled = {
        "the cloud's": (target.beside, "while an edge computes"),
        "an edge's": (simulation.edges[0].beside, "while the cloud does"),
    }
    shown = [
        f"{who} {', '.join(f'{op} x{ratio:.2f}' for op, ratio in ratios.items())} {when}"
        for who, (ratios, when) in coupled.items()
        if ratios
    ]
    if shown:
        notes.append(f"cross-core interference, as profiled: {'; '.join(shown)}")
    sharing = simulation.edges[0].profile.time_sharing if simulation.cores else {}
    if sharing:
        shown_sharing = ", ".join(f"x{ratio:.2f} with {n}" for n, ratio in sorted(sharing.items()))
        notes.append(f"drafts taking turns on a core, as profiled: {shown_sharing} computing")
    sharing = simulation.targets[0].profile.target_time_sharing if simulation.target_cores else {}
    if sharing:
        shown_sharing = ", ".join(f"x{ratio:.2f} with {n}" for n, ratio in sorted(sharing.items()))
        notes.append(f"replicas taking turns on a core, as profiled: {shown_sharing} computing")
    return notes
